"""Crops + preprocessing throughput and live-preview latency, against a bare scikit-image loop.

Builds a synthetic 2D field (uint16, a few hundred textured elliptical cells
with known labels), then times

1. ``crops_from_labels`` with the macrophage pipeline (``core.cells.crops`` +
   ``core.cells.preprocess``) against a hand-written numpy/scikit-image loop doing
   the same work on the same input: fixed-size crop centred on each object's
   centre of mass, one global percentile normalisation, CLAHE, unsharp mask,
   resize, min–max. Both results are compared pixel for pixel. A third run,
   bare cropping + ``apply_pipeline``, separates the cost of the pipeline
   from that of ``crops_from_labels``. Calls alternate, medians are reported.
2. The preview latency: the macrophage pipeline on one 256 × 256 crop
   (what the widget runs per parameter change; target <= 200 ms), median and
   95th percentile, against the same bare calls.

Run: ``.venv/bin/python benchmarks/bench_crop_preprocess.py [--objects 300] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage
from skimage import draw, exposure, filters, transform

from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels
from napari_morphospace.core.cells.preprocess import apply_pipeline, macrophage_pipeline

FIELD = 2048
CROP = 96  # source pixels per crop ("fixed" mode)
OUT = 64  # crop size after the pipeline's resize
PERCENTILES = (0.1, 99.9)


def synthetic_field(n_objects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 field with ``n_objects`` textured ellipses on a noisy background, and their labels."""
    rng = np.random.default_rng(seed)
    image = rng.normal(300, 20, (FIELD, FIELD))
    labels = np.zeros((FIELD, FIELD), np.int32)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (FIELD, FIELD)), 3) * 400
    for label_id in range(1, n_objects + 1):
        centre = rng.uniform(40, FIELD - 40, 2)
        radii = rng.uniform(8, 30, 2)
        rr, cc = draw.ellipse(*centre, *radii, shape=labels.shape, rotation=rng.uniform(0, np.pi))
        labels[rr, cc] = label_id
        image[rr, cc] += rng.uniform(800, 3000) + texture[rr, cc]
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def bare_crops(image: np.ndarray, labels: np.ndarray, preprocess: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Fixed-size crops cut with plain numpy/scipy, each passed to ``preprocess`` as a 2D float32 array."""
    low, high = np.percentile(image, PERCENTILES)
    padded = np.pad(image, CROP, mode="constant")
    out = []
    for label_id, slices in enumerate(ndimage.find_objects(labels), start=1):
        if slices is None:
            continue
        inside = labels[slices] == label_id
        cy, cx = (c + s.start for c, s in zip(ndimage.center_of_mass(inside), slices, strict=True))
        y0, x0 = math.floor(cy + 0.5) - CROP // 2 + CROP, math.floor(cx + 0.5) - CROP // 2 + CROP
        raw = padded[y0 : y0 + CROP, x0 : x0 + CROP].astype(np.float64)
        crop = np.clip((raw - low) / (high - low), 0, 1).astype(np.float32)
        out.append(preprocess(crop))
    return np.stack(out).reshape(len(out), 1, OUT, OUT)


def bare_macrophage(crop: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """CLAHE -> unsharp mask -> resize -> min-max on one 2D float crop in [0, 1]."""
    crop = exposure.equalize_adapthist(crop, clip_limit=0.01)
    crop = np.clip(filters.unsharp_mask(crop, radius=1.0, amount=1.0), 0, 1)
    crop = transform.resize(crop, shape, order=1, anti_aliasing=True, mode="edge")
    return ((crop - crop.min()) / (crop.max() - crop.min())).astype(np.float32)


def interleaved_times(functions: dict[str, Callable[[], object]], runs: int) -> dict[str, np.ndarray]:
    """Seconds per call of each function, calls alternating so that load on the machine hits all alike."""
    for function in functions.values():
        function()  # warm-up: imports, caches
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--preview-runs", type=int, default=50)
    args = parser.parse_args()

    image, labels = synthetic_field(args.objects)
    n = len(np.unique(labels)) - 1
    settings = CropSettings(size=CROP, mode="fixed", mask_neighbours=False, min_area=0, percentiles=PERCENTILES)
    pipeline = macrophage_pipeline((OUT, OUT))

    crop_set = crops_from_labels(image, labels, settings, pipeline=pipeline)

    def bare_preprocess(crop: np.ndarray) -> np.ndarray:
        return bare_macrophage(crop, (OUT, OUT))

    def our_preprocess(crop: np.ndarray) -> np.ndarray:
        return apply_pipeline(crop[None], pipeline)

    difference = np.abs(np.asarray(crop_set.images) - bare_crops(image, labels, bare_preprocess)).max()
    crop_times = interleaved_times(
        {
            "ours": lambda: crops_from_labels(image, labels, settings, pipeline=pipeline),
            "bare": lambda: bare_crops(image, labels, bare_preprocess),
            "bare crops, our pipeline": lambda: bare_crops(image, labels, our_preprocess),
        },
        args.repeats,
    )
    seconds = {name: float(np.median(values)) for name, values in crop_times.items()}
    print(f"field {FIELD}x{FIELD} uint16, {n} objects, {CROP}x{CROP} crops -> macrophage pipeline -> {OUT}x{OUT}")
    print(f"  crops_from_labels + pipeline   : {n / seconds['ours']:7.1f} crops/s (median of {args.repeats} runs)")
    print(f"  bare numpy/scikit-image loop   : {n / seconds['bare']:7.1f} crops/s")
    print(f"  bare cropping + apply_pipeline : {n / seconds['bare crops, our pipeline']:7.1f} crops/s")
    print(f"  throughput ratio ours/bare     : {seconds['bare'] / seconds['ours']:7.2f}")
    print(f"  ratio with bare cropping       : {seconds['bare'] / seconds['bare crops, our pipeline']:7.2f}")
    print(f"  max |ours - bare| over all crops: {difference:.2e}")

    rr, cc = np.nonzero(labels == 1)
    y0 = int(np.clip(rr.mean() - 128, 0, FIELD - 256))
    x0 = int(np.clip(cc.mean() - 128, 0, FIELD - 256))
    low, high = np.percentile(image, PERCENTILES)
    preview = np.clip((image[None, y0 : y0 + 256, x0 : x0 + 256] - low) / (high - low), 0, 1).astype(np.float32)
    preview_pipeline = macrophage_pipeline((256, 256))
    preview_times = interleaved_times(
        {
            "ours": lambda: apply_pipeline(preview, preview_pipeline),
            "bare": lambda: bare_macrophage(preview[0], (256, 256)),
        },
        args.preview_runs,
    )
    ours_ms, bare_ms = preview_times["ours"] * 1000, preview_times["bare"] * 1000
    print(f"preview: macrophage pipeline on one 256x256 crop, {args.preview_runs} runs (target <= 200 ms)")
    print(f"  apply_pipeline : median {np.median(ours_ms):6.1f} ms, p95 {np.percentile(ours_ms, 95):6.1f} ms")
    print(f"  bare calls     : median {np.median(bare_ms):6.1f} ms, p95 {np.percentile(bare_ms, 95):6.1f} ms")
    print(f"  latency ratio ours/bare (median): {np.median(ours_ms) / np.median(bare_ms):.2f}")


if __name__ == "__main__":
    main()
