"""Calibration of ``core.analysis.inference`` on synthetic populations with a known answer.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_inference_calibration.py [--scale 1.0] [--seed 0]

``--scale`` multiplies every repetition count (0.2 for a quick look). Each
check prints the observed rate, the rate it should have, and for the
per-dimension tests the same-run baseline of Student's t-test
(``scipy.stats.ttest_ind``) on the same data. A check passes when the rate is
within the binomial 99.9 % range of the nominal rate (false positives) or
beyond the target (power, FDR, coverage).

1. No shift, cells independent: per-dimension rejection rate at α = 0.05.
2. A shift of d = 0.5 in one of 8 dimensions, 200 cells per group: found
   (BH q ≤ 0.05) in ≥ 90 % of the repetitions; also the whole-space test.
3. Five of 20 dimensions shifted: BH keeps the false discovery rate ≤ q.
4. An image random effect (6 images × 30 cells per condition, ICC 0.2) and
   no shift: the per-cell test rejects far too often, the per-image test
   keeps its level; the same for the whole-space distance.
5. Bootstrap intervals: coverage of the true d (cells independent), and of
   d = 0 under the image random effect, per cell and per image.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from napari_morphospace.core.analysis.inference import (
    bootstrap_intervals,
    distance_test,
    make_units,
    permutation_p_values,
    simulate_conditions,
)

ALPHA = 0.05
Z_999 = 3.29  # two-sided 99.9 % normal quantile


def _pool(a, b, images_a, images_b, by_image):
    values = np.concatenate([a, b])
    in_a = np.arange(len(values)) < len(a)
    ids = np.concatenate([images_a, images_b]) if by_image else None
    return values, in_a, ids


def _band(rate_nominal: float, trials: int) -> tuple[float, float]:
    half = Z_999 * np.sqrt(rate_nominal * (1 - rate_nominal) / trials)
    return rate_nominal - half, rate_nominal + half


def _line(name: str, rate: float, target: str, ok: bool, baseline: float | None = None) -> None:
    base = f"   t-test baseline {baseline:.3f}" if baseline is not None else ""
    print(f"  {name:<55} {rate:.3f}   {target:<24} {'PASS' if ok else 'FAIL'}{base}")


def per_dimension(rng, reps, *, permutations, by_image=False, **population):
    """Raw permutation p-values and t-test p-values, one row per repetition."""
    perm, ttest = [], []
    for _ in range(reps):
        a, b, images_a, images_b = simulate_conditions(rng, **population)
        values, in_a, ids = _pool(a, b, images_a, images_b, by_image)
        perm.append(permutation_p_values(make_units(values, in_a, ids), permutations, rng)[0])
        ttest.append(stats.ttest_ind(a, b).pvalue)
    return np.array(perm), np.array(ttest)


def whole_space(rng, reps, *, permutations, by_image=False, **population):
    p = []
    for _ in range(reps):
        a, b, images_a, images_b = simulate_conditions(rng, **population)
        values, in_a, ids = _pool(a, b, images_a, images_b, by_image)
        p.append(distance_test(values, in_a, "energy", permutations, rng, cells_per_group=500, unit_ids=ids).p)
    return np.array(p)


def coverage(rng, reps, true_d, *, resamples, by_image=False, **population):
    hits = 0
    for _ in range(reps):
        a, b, images_a, images_b = simulate_conditions(rng, **population)
        values, in_a, ids = _pool(a, b, images_a, images_b, by_image)
        low, high, _ = bootstrap_intervals(make_units(values, in_a, ids), resamples, 0.95, rng)
        hits += int(low[1, 0] <= true_d <= high[1, 0])
    return hits / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every repetition count")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reps = lambda n: max(10, int(round(n * args.scale)))  # noqa: E731
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()

    print("1. No shift, 200 independent cells per group, 8 dimensions, 1000 permutations")
    n = reps(500)
    p, t = per_dimension(rng, n, permutations=1000, images=1, cells_per_image=200, dims=8)
    low, high = _band(ALPHA, p.size)
    rate = float((p <= ALPHA).mean())
    _line(
        f"rejection rate at α = 0.05 ({p.size} tests)",
        rate,
        f"in [{low:.3f}, {high:.3f}]",
        low <= rate <= high,
        float((t <= ALPHA).mean()),
    )
    q = stats.false_discovery_control(p, method="bh", axis=1)
    fwer = float((q <= ALPHA).any(axis=1).mean())
    _line(
        "any dimension BH-significant (no true effect)", fwer, f"≤ {_band(ALPHA, n)[1]:.3f}", fwer <= _band(ALPHA, n)[1]
    )

    print("2. Shift d = 0.5 in dimension 0 of 8, 200 cells per group")
    n = reps(200)
    p, t = per_dimension(rng, n, permutations=1000, images=1, cells_per_image=200, dims=8, shift=[0.5])
    found = float((stats.false_discovery_control(p, method="bh", axis=1)[:, 0] <= ALPHA).mean())
    found_t = float((stats.false_discovery_control(t, method="bh", axis=1)[:, 0] <= ALPHA).mean())
    _line(f"found, BH q ≤ 0.05 ({n} repetitions)", found, "≥ 0.90", found >= 0.9, found_t)
    p_space = whole_space(rng, reps(100), permutations=500, images=1, cells_per_image=200, dims=8, shift=[0.5])
    power = float((p_space <= ALPHA).mean())
    _line(f"whole-space energy distance, p ≤ 0.05 ({p_space.size} reps)", power, "≥ 0.90", power >= 0.9)

    print("3. Five of 20 dimensions shifted by d = 0.5, 100 cells per group")
    n = reps(300)
    p, t = per_dimension(rng, n, permutations=1000, images=1, cells_per_image=100, dims=20, shift=[0.5] * 5)
    for level in (0.05, 0.1):
        rejected = stats.false_discovery_control(p, method="bh", axis=1) <= level
        fdr = float((rejected[:, 5:].sum(axis=1) / np.maximum(rejected.sum(axis=1), 1)).mean())
        tol = Z_999 * np.sqrt(level * (1 - level) / n)
        _line(
            f"false discovery rate at q = {level} (power {rejected[:, :5].mean():.2f})",
            fdr,
            f"≤ {level} (+{tol:.3f})",
            fdr <= level + tol,
        )

    print("4. Image random effect (6 images × 30 cells per condition, image SD 0.5: ICC 0.2), no shift")
    population = dict(images=6, cells_per_image=30, dims=4, image_sd=0.5)
    n = reps(500)
    p_cell, t = per_dimension(rng, n, permutations=1000, **population)
    p_image, _ = per_dimension(rng, n, permutations=1000, by_image=True, **population)
    low, high = _band(ALPHA, p_image.size)
    rate_cell, rate_image = float((p_cell <= ALPHA).mean()), float((p_image <= ALPHA).mean())
    _line(
        "per-cell rejection rate (cells wrongly independent)",
        rate_cell,
        "far above 0.05 (shown)",
        rate_cell > high,
        float((t <= ALPHA).mean()),
    )
    _line("per-image rejection rate (924 exact relabellings)", rate_image, f"≤ {high:.3f}", rate_image <= high)
    n = reps(100)
    d_cell = float((whole_space(rng, n, permutations=500, **population) <= ALPHA).mean())
    d_image = float((whole_space(rng, n, permutations=500, by_image=True, **population) <= ALPHA).mean())
    low, high = _band(ALPHA, n)
    _line(f"whole-space distance per cell ({n} reps)", d_cell, "far above 0.05 (shown)", d_cell > high)
    _line(f"whole-space distance per image ({n} reps)", d_image, f"≤ {high:.3f}", d_image <= high)

    print("5. 95 % bootstrap intervals (BCa) of Cohen's d")
    n = reps(200)
    low, high = _band(0.95, n)
    cover = coverage(rng, n, 0.5, resamples=1000, images=1, cells_per_image=50, dims=1, shift=[0.5])
    _line(
        f"coverage of d = 0.5, 50 cells per group ({n} reps)",
        cover,
        f"in [{low:.3f}, {high:.3f}]",
        low <= cover <= high,
    )
    population = dict(images=12, cells_per_image=20, dims=1, image_sd=0.5)
    cover_cell = coverage(rng, n, 0.0, resamples=1000, **population)
    cover_image = coverage(rng, n, 0.0, resamples=1000, by_image=True, **population)
    _line("coverage of d = 0 with image effect, per cell", cover_cell, "far below 0.95 (shown)", cover_cell < low)
    _line("coverage of d = 0 with image effect, per image", cover_image, f"≥ {low:.3f} (12 images)", cover_image >= low)
    print(f"total {time.perf_counter() - start:.0f} s (seed {args.seed}, scale {args.scale})")


if __name__ == "__main__":
    main()
