"""The HTML report of a sweep folder (:mod:`.sweep`), from its comparison table and run records.

:func:`write_sweep_report` writes the figures of
:mod:`~napari_morphospace.core.figures.sweep` as PNGs under ``figures/`` and
``report.html``, each atomically.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..figures.render import render_figure
from ..figures.sweep import effect_size_figure, elbo_figure, scores_figure
from ..files import atomic_path, atomic_write_text
from .report import _STYLE, _img, _p, _table
from .sweep import (
    FIGURES_FOLDER,
    MARKER_NAME,
    REPORT_NAME,
    SPLIT_NAME,
    TABLE_NAME,
    open_sweep_settings,
    run_records,
)


def _warning_parts(records: list[dict[str, Any]]) -> list[str]:
    """The diagnostics' warnings of every finished run, each with what to try."""
    found = [
        (r["name"], w)
        for r in records
        if r.get("status") == "ok"
        for w in ((r.get("test") or {}).get("diagnostics") or {}).get("warnings", [])
    ]
    if not found:
        return []
    items = "".join(f'<li class="problem">{html.escape(f"{name}: {warning}")}</li>' for name, warning in found)
    return ["<h3>Warnings</h3>", f"<ul>{items}</ul>"]


def _write_png(figure: Any, path: Path) -> Path:
    png = render_figure(figure)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return path


def write_sweep_report(folder: str | Path, table: pd.DataFrame) -> Path:
    """Write the figures (``figures/*.png``) and ``report.html`` of a sweep folder, each atomically."""
    folder = Path(folder)
    settings = open_sweep_settings(folder)
    records = run_records(folder)
    marker = json.loads((folder / MARKER_NAME).read_text())
    split = pd.read_csv(folder / SPLIT_NAME)["part"].value_counts()
    figures = {
        "elbo_vs_beta": elbo_figure(table),
        "scores": scores_figure(table),
        "effect_sizes": effect_size_figure(records),
    }
    for name, figure in figures.items():
        _write_png(figure, folder / FIGURES_FOLDER / f"{name}.png")
    axes = (
        "; ".join(
            f"{name}: "
            f"{', '.join('auto' if v is None else f'{v:g}' if isinstance(v, float) else str(v) for v in values)}"
            for name, values in settings.grid.axes()
        )
        or "nothing (one run of the base settings)"
    )
    shown = table.drop(columns=["bundle"]).astype(object)
    shown = shown.where(shown.notna(), "")
    body = [
        f"<h1>{html.escape(f'Morphospace sweep: {folder.resolve().name}')}</h1>",
        _p(
            f"Crop set: {marker.get('crop_set_origin') or '?'} ({marker.get('n_crops')} crops). Grid: {axes}; "
            f"{len(table)} runs, {int((table['status'] == 'ok').sum())} finished."
        ),
        _p(
            f"Split once by source image, recorded in {SPLIT_NAME}: {split.get('train', 0)} train, "
            f"{split.get('val', 0)} "
            f"validation and {split.get('test', 0)} test crops. Every run trains on the same crops; the ELBO terms, "
            "active units, SSIM, spread ratio and effect sizes below are measured on the test crops, which no run saw "
            "during training or model selection."
        ),
        *[_p(f"Note: {note}") for note in marker.get("split_notes", [])],
        "<h2>Comparison</h2>",
        _p(
            f"Also in {TABLE_NAME}. Measured by the end-of-training diagnostics on the test crops: ELBO terms in "
            f"nats per crop, z sampled {settings.elbo_samples} times per crop, β = 1 (KL: each encoder's own for "
            "the ME-VAE); active units and SSIM in eval mode; spread_ratio: spread of μ with batch over running "
            "normalisation statistics (near 1 when they agree). β is tc_beta for β-TCVAE; depth empty: the adaptive "
            "rule. Probe R²: ridge regression from the latent means (and from a PCA of the pixels with as many "
            "components, fitted on the training crops) to the crop-table measurements, cross-validated over all "
            "crops with folds grouped by source image, so every cell is predicted by a probe fitted on other images. "
            "warnings: what the diagnostics found wrong (below)."
        ),
        _table(shown.itertuples(index=False), list(shown.columns)),
        *_warning_parts(records),
        "<h2>ELBO terms against β (test split)</h2>",
        _img(figures["elbo_vs_beta"], "ELBO terms against beta"),
        "<h2>Active units, SSIM, probe R²</h2>",
        _img(figures["scores"], "scores per run"),
        "<h2>Effect-size profiles</h2>",
        _p("|Cohen's d| per latent dimension between the first two groups of the test crops, largest first."),
        _img(figures["effect_sizes"], "effect-size profiles"),
    ]
    failed = table[table["status"] == "failed"]
    if len(failed):
        body += [
            "<h2>Failed runs</h2>",
            _table(failed[["name", "message"]].itertuples(index=False), ["run", "message"]),
        ]
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(folder.name)} sweep'
        f"</title><style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    atomic_write_text(folder / REPORT_NAME, page)
    return folder / REPORT_NAME


__all__ = ["write_sweep_report"]
