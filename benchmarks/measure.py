"""Memory of the running process, for the benchmarks that print peak memory."""

from __future__ import annotations

from pathlib import Path


def memory_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return memory_kib("VmHWM") / 1024
