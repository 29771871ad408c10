"""Sweep comparisons as figures (:mod:`~napari_morphospace.core.project.sweep` writes the table and run records).

* :func:`elbo_figure` — the ELBO terms on the held-out test split, reconstruction
  and KL, against β: one line per combination of the other swept settings (the
  Statistical Cell's figure).
* :func:`scores_figure` — active units, test SSIM and probe R² (latents and
  pixel PCA) per run.
* :func:`effect_size_figure` — each run's |Cohen's d| per latent dimension,
  largest first, side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

#: Settings that tell the runs of a sweep apart besides β (one line per combination in the ELBO figure).
SERIES_COLUMNS = ("model", "latent_dim", "depth", "block")


def _finished(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == "ok"]


def _series_label(row: pd.Series, varying: list[str]) -> str:
    names = {"latent_dim": "latent", "depth": "depth", "block": "", "model": ""}
    parts = []
    for column in varying:
        value = row[column]
        parts.append(f"{names[column]}{'auto' if pd.isna(value) else value}")
    return " ".join(parts) or "runs"


def elbo_figure(table: pd.DataFrame) -> Figure:
    """Test-split reconstruction term and KL (nats per crop) against β, one line per other setting."""
    figure = Figure(figsize=(8.0, 3.0), layout="constrained")
    ax_rec, ax_kl = figure.subplots(1, 2)
    done = _finished(table)
    varying = [c for c in SERIES_COLUMNS if table[c].astype(str).nunique() > 1]
    for _, part in done.groupby(varying, dropna=False, sort=False) if varying else [("", done)]:
        if part.empty:
            continue
        part = part.sort_values("beta")
        label = _series_label(part.iloc[0], varying)
        ax_rec.plot(part["beta"], part["elbo_rec"], "o-", label=label)
        ax_kl.plot(part["beta"], part["elbo_kl"], "o-", label=label)
    log_x = len(done) > 0 and (done["beta"] > 0).all() and done["beta"].max() / done["beta"].min() >= 10
    betas = sorted(done["beta"].unique())
    for ax, title in ((ax_rec, "reconstruction term"), (ax_kl, "KL to the prior")):
        ax.set(xlabel="β (tc_beta for β-TCVAE)", ylabel="nats per crop")
        ax.set_title(f"{title}, test split", fontsize=9)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        if betas:  # tick the swept values themselves
            ax.set_xticks(betas)
            ax.set_xticklabels([f"{b:g}" for b in betas])
    if varying:
        ax_kl.legend(fontsize=7)
    return figure


def scores_figure(table: pd.DataFrame) -> Figure:
    """Per run: active units (of the latent size), test SSIM, and probe R² of the latents and of pixel PCA."""
    done = _finished(table)
    figure = Figure(figsize=(9.0, 0.8 + 0.28 * max(len(done), 1)), layout="constrained")
    ax_units, ax_ssim, ax_probe = figure.subplots(1, 3, sharey=True)
    y = np.arange(len(done))
    ax_units.barh(y, done["latent_dim"].astype(float), color="#dddddd")
    ax_units.barh(y, done["active_units"].astype(float), color="#1f77b4")
    ax_units.set_yticks(y)
    ax_units.set_yticklabels(list(done["name"]), fontsize=7)
    ax_units.invert_yaxis()
    ax_units.set_title("active units (blue) of latent size", fontsize=9)
    ax_ssim.barh(y, done["ssim"].astype(float), color="#2ca02c")
    ax_ssim.set(xlim=(0, 1))
    ax_ssim.set_title("test SSIM of μ decodes", fontsize=9)
    ax_probe.barh(y - 0.2, done["probe_r2"].astype(float), height=0.4, color="#ff7f0e")
    ax_probe.barh(y + 0.2, done["pca_probe_r2"].astype(float), height=0.4, color="#999999")
    ax_probe.axvline(0, color="black", linewidth=0.5)
    ax_probe.set_title("probe R²: latents (orange), PCA (grey)", fontsize=9)
    return figure


def effect_size_figure(records: list[dict[str, Any]]) -> Figure:
    """Small multiples: each finished run's |Cohen's d| per latent dimension, sorted, on a shared axis."""
    profiles = [
        (r["name"], (r.get("test") or {}).get("abs_cohens_d") or []) for r in records if r.get("status") == "ok"
    ]
    profiles = [(name, values) for name, values in profiles if values]
    columns = min(max(len(profiles), 1), 4)
    rows = max(1, -(-len(profiles) // columns))
    figure = Figure(figsize=(2.4 * columns, 1.9 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, sharey=True, squeeze=False)).ravel()
    for ax, (name, values) in zip(axes, profiles, strict=False):  # the last row's spare panels are hidden below
        ordered = sorted((float(v) if v is not None else 0.0 for v in values), reverse=True)
        ax.bar(np.arange(len(ordered)), ordered, color="#d62728")
        ax.set_xticks(np.arange(len(ordered)))
        ax.set_xticklabels([str(i + 1) for i in range(len(ordered))], fontsize=6)
        ax.set_title(name, fontsize=7)
        ax.set_xlabel("dimensions, largest |d| first", fontsize=7)
    for ax in axes[len(profiles) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("|Cohen's d|, test split")
    return figure


__all__ = ["effect_size_figure", "elbo_figure", "scores_figure"]
