"""Work spread over the local cores or a dask.distributed cluster: one task per file or block of crops.

dask.distributed does all the scheduling. ``workers=N`` starts a
``LocalCluster`` of N single-threaded worker processes on this machine;
``scheduler="tcp://host:8786"`` connects to a running cluster (``dask
scheduler`` plus ``dask worker`` on each node, or dask-jobqueue on SLURM/PBS).
Workers open the input files and write the output folder themselves, so
on a cluster both must be on a filesystem every node sees at the same path.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import InputError


@contextmanager
def dask_client(*, workers: int | None = None, scheduler: str | None = None, timeout_s: float = 20) -> Iterator[Any]:
    """A ``distributed.Client`` for ``workers`` local processes or the cluster at ``scheduler``; None for neither.

    A scheduler that does not answer within ``timeout_s`` is an error. The
    local cluster (and the connection) is closed when the block ends.
    """
    if workers is not None and scheduler is not None:
        raise InputError("give either a number of workers or a scheduler address, not both")
    if workers is not None and workers < 1:
        raise InputError(f"workers is {workers}; use 1 or more local worker processes")
    if workers is None and scheduler is None:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{timeout_s}s")
        except (OSError, TimeoutError) as err:
            raise InputError(
                f"cannot reach the dask scheduler at {scheduler} ({err}); check the address, or start one with "
                "'dask scheduler' and workers with 'dask worker ADDRESS'"
            ) from err
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def ordered_map(
    client: Any, function: Callable[..., Any], items: Iterable[Any], *, ahead: int | None = None
) -> Iterator[Any]:
    """``function(item)`` for each item, run on the cluster, results yielded in the order of ``items``.

    At most ``ahead`` tasks (default: twice the worker threads) are
    submitted beyond the result being waited for, so results that take
    memory or disk never pile up. Tasks not yet collected are cancelled
    when the caller stops early or a task fails.
    """
    ahead = ahead or 2 * max(1, sum(client.nthreads().values()))
    pending: deque = deque()
    items = iter(items)
    try:
        for item in items:
            pending.append(client.submit(function, item, pure=False))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        if pending:
            client.cancel(list(pending))


def worker_threads() -> int:
    """Threads of the dask worker running the calling task (1 outside a worker)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError):
        return 1


__all__ = ["dask_client", "ordered_map", "worker_threads"]
