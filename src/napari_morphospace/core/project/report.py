"""A self-contained HTML report of an analysis folder, reproducing the studies' analyses.

One HTML file, figures embedded as base64 PNG, no external assets: it can be
mailed, archived or opened offline. Sections, in order (:data:`SECTIONS`):
data and preprocessing (with example crops), training curves, per-dimension
KL, Cohen's d forest plot, the inference between the groups (permutation
tests, FDR, bootstrap intervals, whole-space distance), KDE and violin plots of the top dimensions,
latent traversals, ±3 difference maps (absolute and 1 − SSIM), Grad-CAM of
the top dimensions (both signs), classifier metrics, the known answer and
disentanglement metrics (with ground-truth factors), per-track statistics
and paths of tracked cells, and the exact versions and settings (as tables).
The top dimensions are those with the largest
|Cohen's d| between two groups, or with the largest KL when the cells form
one group: then only the group comparisons are left out. A section that
cannot be made says "not available" and why; the report is still written. The
figures are drawn by :mod:`~napari_morphospace.core.figures` (no pyplot state),
and every string that comes from the user or the folder is HTML-escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ... import __version__
from ..analysis.cell_table import ID_COLUMNS
from ..analysis.latent_summary import LatentSummary, summarise_latents
from ..config import to_dict
from ..errors import InputError
from ..figures.render import render_figure
from ..files import atomic_write_text
from ..outputs import check_output
from .analysis_folder import Analysis, AnalysisFolder, FileRef, open_analysis

log = logging.getLogger(__name__)

SECTIONS = (
    "Data and preprocessing",
    "Training",
    "What the model learned",
    "Per-dimension KL",
    "Group differences (Cohen's d)",
    "Inference between the groups",
    "Top dimensions: KDE and violin plots",
    "Latent traversals",
    "Difference maps",
    "Grad-CAM",
    "Classifier",
    "Known answer",
    "Disentanglement (MIG and DCI)",
    "Tracks through latent space",
    "Versions and settings",
)
TOP_DIMENSIONS = 3
KNOWN_ANSWER_RHO = 0.5


class NotAvailable(Exception):
    """A section cannot be made; the message says why (shown in the report)."""


@dataclass
class Section:
    """One report section: a title, HTML body parts (already escaped) or the reason it is not available."""

    title: str
    parts: list[str] = field(default_factory=list)
    not_available: str | None = None


# ---------------------------------------------------------------- latents and groups


def factors_for_latents(latents: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """The factor row of every latent row, matched on ``group`` and ``label_id`` (and ``t`` when both have it).

    Raises
    ------
    NotAvailable
        When the tables share no key or some cells have no factors.
    """
    keys = [k for k in ("group", "label_id", "t") if k in latents.columns and k in factors.columns]
    if "label_id" not in keys:
        raise NotAvailable("the factor table has no label_id column to match its rows to the cells")
    left = latents[keys].copy()
    right = factors.copy()
    for key in keys:
        left[key] = left[key].astype(str)
        right[key] = right[key].astype(str)
    if right.duplicated(keys).any():
        raise NotAvailable(f"the factor table has several rows per cell ({', '.join(keys)})")
    merged = left.merge(right, on=keys, how="left", indicator=True)
    unmatched = int((merged["_merge"] != "both").sum())
    if unmatched:
        raise NotAvailable(f"{unmatched} cell(s) have no row in the factor table (matched on {', '.join(keys)})")
    return merged.drop(columns=["_merge"])


def factor_columns(factors: pd.DataFrame) -> list[str]:
    """Numeric factor columns that vary (the cell table's id columns, the group and centroids left out)."""
    return [
        c
        for c in factors.columns
        if c not in ID_COLUMNS
        and c != "group"
        and not c.startswith(("_", "centroid_"))
        and pd.api.types.is_numeric_dtype(factors[c])
        and factors[c].nunique() > 1
    ]


def check_known_answer(
    latents: pd.DataFrame, factors: pd.DataFrame, shifted: Sequence[str], *, threshold: float = KNOWN_ANSWER_RHO
) -> dict[str, Any]:
    """Does the dimension with the largest |Cohen's d| follow a factor the treated group shifts?

    Spearman's ρ between that dimension's posterior mean and each shifted
    factor, over all cells; the check passes when the largest |ρ| exceeds
    ``threshold``.

    Returns
    -------
    dict
        ``dimension``, ``cohens_d``, ``groups`` (compared, b − a),
        ``spearman`` (factor -> ρ), ``best_factor``, ``best_rho``,
        ``threshold`` and ``passed``.
    """
    summary = summarise_latents(latents)
    try:
        effects = summary.require_two_groups()
    except InputError as err:  # the demo tells "not available" from a failed answer
        raise NotAvailable(str(err)) from err
    matched = factors_for_latents(latents, factors)
    present = [f for f in shifted if f in matched.columns]
    if not present:
        raise NotAvailable(f"the factor table has none of the shifted factors {', '.join(shifted)}")
    dim = summary.ranking[0]
    rho = {f: float(spearmanr(summary.mu[:, dim], matched[f].to_numpy(dtype=float)).statistic) for f in present}
    best = max(rho, key=lambda f: abs(rho[f]) if np.isfinite(rho[f]) else -1.0)
    return {
        "dimension": dim,
        "cohens_d": float(effects.d[dim]),
        "groups": [summary.reference, summary.condition],
        "spearman": rho,
        "best_factor": best,
        "best_rho": rho[best],
        "threshold": threshold,
        "passed": bool(abs(rho[best]) > threshold),
    }


# ---------------------------------------------------------------- HTML helpers


def _img(figure: Any, alt: str) -> str:
    """A matplotlib Figure as an ``<img>`` with the PNG inline."""
    data = base64.b64encode(render_figure(figure)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header or ())
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return (f"<table><thead><tr>{head}</tr></thead>" if header else "<table>") + f"<tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def settings_rows(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings (JSON/YAML values) as ``(dotted name, value)`` rows: a table to read instead of raw JSON."""
    if isinstance(data, Mapping):
        rows = [
            row
            for key, value in data.items()
            for row in settings_rows(value, f"{prefix}.{key}" if prefix else str(key))
        ]
        return rows or [(prefix, "(none)")]
    if isinstance(data, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in data):
        return [row for i, value in enumerate(data) for row in settings_rows(value, f"{prefix}[{i}]")]
    return [(prefix, _value_text(data))]


def _value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v) for v in value) if value else "(none)"
    return _fmt(value)


def _settings_table(data: Any) -> str:
    return _table(settings_rows(data), ["setting", "value"])


# ---------------------------------------------------------------- sections


@dataclass
class _Context:
    analysis: Analysis
    summary: LatentSummary | None = None
    summary_error: str | None = None

    def require_latents(self) -> pd.DataFrame:
        if self.analysis.latents is None:
            raise NotAvailable("the analysis has no latent table; train a model and embed the crops")
        return self.analysis.latents

    def require_summary(self) -> LatentSummary:
        if self.summary is None:
            raise NotAvailable(self.summary_error or "no latents")
        return self.summary

    def require_model(self) -> Any:
        bundle = self.analysis.bundle
        if bundle is None:
            raise NotAvailable("the analysis has no model bundle; train a model first")
        if bundle.model_settings.model == "cond-vae":
            raise NotAvailable(
                "the conditional model decodes only with a reference image; use the Traversal widget on a chosen cell"
            )
        return bundle.model

    def require_crops(self) -> Any:
        if self.analysis.crop_set is None:
            raise NotAvailable("the analysis has no crop set (or it could not be opened)")
        return self.analysis.crop_set


def _data_section(ctx: _Context) -> list[str]:
    from ..figures.gallery import gallery_figure

    crop_set = ctx.require_crops()
    table = crop_set.table
    counts = table["group"].astype(str).value_counts(sort=False)
    parts = [
        _p(
            f"{len(crop_set)} crops of shape {tuple(int(n) for n in crop_set.images.shape[1:])} (C, [Z,] Y, X), "
            f"channels {', '.join(map(str, crop_set.channel_names))}; "
            f"crop pixel size {tuple(crop_set.spacing) or 'unknown'}."
        ),
        _table([(g, n) for g, n in counts.items()], ["group", "crops"]),
        _table([(s, n) for s, n in table["source"].astype(str).value_counts(sort=False).items()], ["source", "crops"]),
        "<h3>Preprocessing</h3>"
        + (_settings_table(crop_set.preprocess) if crop_set.preprocess else _p("none recorded")),
        _img(gallery_figure(crop_set.images, list(table["group"].astype(str)), per_group=8), "example crops per group"),
    ]
    return parts


def _training_section(ctx: _Context) -> list[str]:
    from ..figures.training import training_curves_figure

    bundle = ctx.analysis.bundle
    if bundle is None:
        raise NotAvailable("the analysis has no model bundle; train a model first")
    history = bundle.config.get("history") or []
    if not history:
        raise NotAvailable("the model bundle records no training history")
    last = history[-1]
    terms = list(dict.fromkeys(k.split("_", 1)[1] for k in last if k.startswith(("train_", "val_"))))
    rows = [(term, last.get(f"train_{term}", "—"), last.get(f"val_{term}", "—")) for term in terms]
    return [
        _p(
            f"{len(history)} epoch(s); the losses of the last epoch, per crop (log axes in the figure where the "
            "values are positive):"
        ),
        _table(rows, ["term", "training", "validation"]),
        _img(training_curves_figure(history), "training curves"),
    ]


def _learned_section(ctx: _Context) -> list[str]:
    """The end-of-training diagnostics of the bundle and, when the label images are at hand, the probe."""
    bundle = ctx.analysis.bundle
    if bundle is None:
        raise NotAvailable("the analysis has no model bundle; train a model first")
    diagnostics = bundle.diagnostics
    parts = []
    if diagnostics is None:
        parts.append(_p("The model bundle records no end-of-training diagnostics (trained with an older version)."))
    else:
        parts.append(_p("Measured on the held-out crops at the end of training, in eval mode:"))
        parts += [f'<p class="problem">{html.escape(w)}</p>' for w in diagnostics.warnings]
        parts.append(
            "<ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in diagnostics.lines() if not line.startswith("WARNING"))
            + "</ul>"
        )
    parts += _probe_parts(ctx)
    return parts


def _probe_parts(ctx: _Context) -> list[str]:
    """Ridge-probe R² from the latents and from pixel PCA to the cells' regionprops measurements.

    The cells are measured in the label images they were cut from when those
    are at hand, else in their crops and object masks (crops cut from labels
    keep them); latents that know less than pixel PCA get the plain warning.
    """
    from ..analysis.cell_table import require_mu_columns
    from ..training.diagnostics import (
        PROBE_CELLS,
        PROBE_WORSE,
        cell_measurements,
        mask_measurements,
        probe_warning,
        representation_probe,
    )

    latents, crop_set = ctx.analysis.latents, ctx.analysis.crop_set
    if latents is None or crop_set is None or not any(c.startswith("mu_") for c in latents.columns):
        return [_p("Representation probe not available: it needs the model's latent table and the crop set.")]
    table = crop_set.table
    labels, intensities = _source_label_images(ctx.analysis)
    missing = sorted(set(table["source"].astype(str)) - set(labels))
    single_channel = crop_set.images.shape[1] == 1
    if not missing:
        rows = np.arange(len(table))
        with_intensity = set(table["source"].astype(str)) <= set(intensities)
        measurements = cell_measurements(table, labels, intensities if with_intensity else None)
        where = "measured in the label images the crops were cut from"
    elif crop_set.masks is not None:
        rows = np.unique(np.linspace(0, len(table) - 1, min(len(table), PROBE_CELLS)).round().astype(int))
        images = np.asarray(crop_set.subset(rows).images)
        measurements = mask_measurements(np.asarray(crop_set.subset(rows).masks), images if single_channel else None)
        where = f"measured in their crops and object masks ({len(rows)} cells)"
    else:
        return [
            _p(
                f"Representation probe not available: no label image for source(s) {', '.join(missing[:3])}, "
                "and the crops keep no object masks (made before masks were kept, or not from labels)."
            )
        ]
    mu = latents.set_index("crop_id").reindex(table["crop_id"].iloc[rows])[require_mu_columns(latents)]
    probe = representation_probe(
        mu.to_numpy(dtype=float),
        np.asarray(crop_set.subset(rows).images),
        measurements.reset_index(drop=True),
        table["source"].iloc[rows].astype(str),
    )
    how = "folds grouped by source image" if probe.grouped else f"random folds ({probe.note})"
    parts = [f'<p class="problem">{html.escape(probe_warning(probe))}</p>'] if probe.ratio < PROBE_WORSE else []
    return parts + [
        _p(
            f"What the latents know about each cell: {probe.folds}-fold cross-validated ridge regression ({how}) "
            f"from the {mu.shape[1]} latent means to the cells' regionprops measurements ({where}), next to the "
            f"same probe on a {probe.n_components}-component PCA of the crop pixels. Mean R² {probe.latent_mean:.3f} "
            f"(latents) against {probe.pca_mean:.3f} (pixel PCA): ratio {probe.ratio:.3f}."
        ),
        _table(probe.rows(), ["measurement", "latent R²", "pixel PCA R²"]),
    ]


def _source_label_images(analysis: Analysis) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Label images (and single-channel intensity images) by the source names the crop table uses."""
    from ..cells.crop_job import read_labels
    from ..io.stacks import read_stack

    labels, intensities = {}, {}
    for source, image in zip(
        analysis.manifest.sources, analysis.source_images, strict=True
    ):  # outside only with consent
        label_path = analysis.labels_path(source)
        if image is None or label_path is None:
            continue
        label_image = read_labels(label_path)
        data = np.asarray(read_stack(image).data)
        # The command line names a crop's source by its image file; the Cells widget by its objects layer,
        # which File > Open names after the label file (its stem).
        for name in {str(image), str(image.resolve()), source.image.absolute, image.name, label_path.stem}:
            labels[name] = label_image
            if data.shape == label_image.shape:
                intensities[name] = data
    return labels, intensities


def _kl_section(ctx: _Context) -> list[str]:
    from ..analysis.statistics import active_units, empirical_kl_to_standard_normal, kl_per_dimension
    from ..figures.statistics import kl_bar_figure

    summary = ctx.require_summary()
    if summary.measured:
        raise NotAvailable(
            "not applicable to a feature table (no posterior): the KL to the prior measures a "
            "model's latents, and these columns are measurements"
        )
    if summary.logvar is None:
        raise NotAvailable(
            "the latent table has no logvar_* columns; embed the crops with the model "
            "('morphospace embed' or the Embed widget) to get them"
        )
    kl = kl_per_dimension(summary.mu, summary.logvar)
    try:
        empirical = f"{empirical_kl_to_standard_normal(summary.mu):.4g} nats"
    except InputError as err:
        empirical = f"not available ({err})"
    return [
        _p(
            f"Active units (Var(μ) > 0.01): {active_units(summary.mu)} of {summary.mu.shape[1]}. "
            f"Total KL {kl.sum():.4g} nats. Empirical KL of the latent means to N(0, I): {empirical}."
        ),
        _img(kl_bar_figure(kl), "per-dimension KL"),
        _table([(f"dim {i}", kl[i]) for i in np.argsort(-kl)], ["dimension", "KL [nats]"]),
    ]


def _cohen_section(ctx: _Context) -> list[str]:
    from ..figures.statistics import forest_figure

    summary = ctx.require_summary()
    effects = summary.require_two_groups()
    parts = [
        _p(
            f"Cohen's d of {summary.condition} against {summary.reference} (pooled SD, ddof 1; positive: higher "
            f"in {summary.condition}), 95 % confidence intervals; top dimensions {summary.top(TOP_DIMENSIONS)}."
        )
    ]
    parts.append(_img(forest_figure(effects, top=15), "Cohen's d forest plot"))
    probe = summary.probe
    if probe is None:
        parts.append(_p("Linear probe not available: each group needs at least 2 cells per fold, 2 folds"))
    else:
        how = "folds grouped by source image" if probe["grouped"] else "random folds"
        parts.append(
            _p(
                f"Linear probe (logistic regression, {len(probe['per_fold']['auroc'])}-fold, {how}): "
                f"balanced accuracy {probe['balanced_accuracy']:.3f}, AUROC {probe['auroc']:.3f}."
                + (f" Note: {probe['note']}" if probe["note"] else "")
            )
        )
    return parts


def _inference_section(ctx: _Context) -> list[str]:
    """Permutation tests with BH FDR, bootstrap intervals and the whole-space distance: per image where possible."""
    from ..analysis.inference import InferenceSettings, compare_groups

    summary = ctx.require_summary()
    latents = ctx.require_latents()
    summary.require_two_groups()
    try:
        result = compare_groups(
            latents, "group", summary.condition, summary.reference, InferenceSettings(by_image=True)
        )
    except InputError as err:  # e.g. one image per condition: test cells, and say why
        result = compare_groups(latents, "group", summary.condition, summary.reference, InferenceSettings())
        result.notes.insert(0, f"Not tested per image: {err}.")
    dims = result.dimensions
    rows = [
        (
            dims.names[i],
            dims.d[i],
            f"[{dims.d_low[i]:+.3g}, {dims.d_high[i]:+.3g}]",
            dims.mean_difference[i],
            dims.p[i],
            dims.q[i],
            "yes" if dims.significant[i] else "",
        )
        for i in dims.ranking()
    ]
    return [_p(line) for line in result.summary_lines()] + [
        _table(rows, ["dimension", "Cohen's d", "95 % CI of d", "mean difference", "p", "q (BH)", "significant"])
    ]


def _distribution_section(ctx: _Context) -> list[str]:
    from ..figures.statistics import kde_figure, violin_figure

    summary = ctx.require_summary()
    keep = np.isin(summary.groups, summary.group_names)
    top = summary.top(TOP_DIMENSIONS)
    names = list(summary.names) if summary.measured else [f"dim {i}" for i in range(summary.mu.shape[1])]
    if summary.effects is not None:
        names = [f"{name} (d={summary.effects.d[i]:+.2f})" for i, name in enumerate(names)]
    if summary.measured:
        what = f"measured features {', '.join(summary.names[i] for i in top)}"
    else:
        what = f"posterior means of the top dimensions {top}"
    return [
        _p(f"Distribution of the {what} (ranked by {summary.ranked_by}) in {' and '.join(summary.group_names)}."),
        _img(kde_figure(summary.mu[keep], summary.groups[keep], top, names), "KDE of the top dimensions"),
        _img(violin_figure(summary.mu[keep], summary.groups[keep], top, names), "violins of the top dimensions"),
    ]


def _traversal_section(ctx: _Context) -> list[str]:
    from ..analysis.traversal import traversal_grid
    from ..figures.traversal import traversal_figure

    model = ctx.require_model()
    summary = ctx.require_summary()
    parts = []
    for name in summary.group_names:
        start = summary.mu[summary.groups == name].mean(axis=0)
        grid = traversal_grid(model, summary.top(TOP_DIMENSIONS), n_steps=7, start=start)
        parts.append(f"<h3>From the mean of {html.escape(name)}</h3>")
        parts.append(_img(traversal_figure(grid, dims=summary.top(TOP_DIMENSIONS)), f"traversal from the {name} mean"))
    parts.insert(
        0,
        _p(
            f"Each row walks one of the top dimensions {summary.top(TOP_DIMENSIONS)} (ranked by "
            f"{summary.ranked_by}) from −3 "
            "to +3 (in units of the latent scale) while the other dimensions stay at the group's mean; "
            "decoded in eval mode, channel 0 shown."
        ),
    )
    return parts


def _difference_section(ctx: _Context) -> list[str]:
    from ..analysis.difference import traversal_difference
    from ..figures.maps import difference_figure

    model = ctx.require_model()
    summary = ctx.require_summary()
    start = summary.mu.mean(axis=0)
    maps = [(dim, traversal_difference(model, dim, start=start)) for dim in summary.top(TOP_DIMENSIONS)]
    rows = [
        (f"dim {dim}", float(r["abs"].mean()), "—" if r["dissimilarity"] is None else float(r["dissimilarity"].mean()))
        for dim, r in maps
    ]
    no_ssim = maps[0][1]["ssim_message"] if maps else None
    return [
        _p(
            "Absolute and structural (1 − SSIM; Gaussian window σ 1.5, data range 1.0) difference between the decodes "
            f"at −3 and +3 of each top dimension (ranked by {summary.ranked_by}), the others at the mean of all cells."
            + (f" No 1 − SSIM map: {no_ssim}." if no_ssim else "")
        ),
        _img(difference_figure(maps), "difference maps"),
        _table(rows, ["dimension", "mean |difference|", "mean 1 − SSIM"]),
    ]


def _gradcam_section(ctx: _Context) -> list[str]:
    from ..analysis.gradcam import gradcam_encoder
    from ..figures.maps import gradcam_figure

    model = ctx.require_model()
    summary = ctx.require_summary()
    crop_set = ctx.require_crops()
    latents = ctx.require_latents()
    position = {int(c): i for i, c in enumerate(crop_set.table["crop_id"])}
    chosen: list[int] = []
    for name in summary.group_names:  # the two cells of each group most extreme along the top dim
        rows = np.flatnonzero(summary.groups == name)
        order = rows[np.argsort(summary.mu[rows, summary.ranking[0]])]
        chosen += [int(order[0]), int(order[-1])]
    crop_ids = [int(latents["crop_id"].iloc[r]) for r in chosen]
    crops = np.stack([np.asarray(crop_set.images[position[c]], dtype=np.float32) for c in crop_ids])
    dims = summary.ranking[:2]
    maps = {(dim, sign): gradcam_encoder(model, crops, dim, sign=sign) for dim in dims for sign in (1, -1)}
    labels = [f"{summary.groups[r]} #{c}" for r, c in zip(chosen, crop_ids, strict=True)]
    return [
        _p(
            "Grad-CAM of the posterior mean μ_k (never a sampled z) for the top dimensions, for both signs (a "
            "latent's sign is arbitrary and the ReLU drops negative evidence); cells with the lowest and highest "
            f"μ{summary.ranking[0]} of each group."
        ),
        _img(gradcam_figure(crops, maps, dims, labels), "Grad-CAM examples"),
    ]


def _classifier_section(ctx: _Context) -> list[str]:
    """The metrics document of core.classifier.report: pooled and per-fold metrics, confusion, channel evidence."""
    from ..classifier.report import METRIC_COLUMNS, METRIC_TITLES

    metrics = ctx.analysis.classifier
    if metrics is None:
        raise NotAvailable("no classifier was trained in this analysis (no classifier.json)")
    pooled = metrics.get("pooled")
    if not isinstance(pooled, dict):
        raise NotAvailable("the classifier stopped before its first cross-validation fold finished")
    classes = [str(c) for c in metrics.get("classes", [])]
    rows = [("pooled", *(pooled.get(m) for m in METRIC_COLUMNS), pooled.get("n_crops"))]
    for name, key in (("fold mean", "fold_mean"), ("fold SD", "fold_sd")):  # as the organelle study reports them
        if isinstance(metrics.get(key), dict):
            rows.append((name, *(metrics[key].get(m) for m in METRIC_COLUMNS), ""))
    rows += [
        (f"fold {k + 1}", *(fold.get(m) for m in METRIC_COLUMNS), fold.get("n_crops"))
        for k, fold in enumerate(metrics.get("folds", []))
    ]
    parts = [
        _p(
            f"Classes from the column {metrics.get('label_column') or '?'!r}: {', '.join(classes)}; "
            f"{(metrics.get('settings') or {}).get('fusion', '?')} fusion. Folds are grouped by source image, so crops "
            "of one image never sit in both training and test; mean and SD (ddof=1) are over the folds."
        ),
        _table(rows, ["", *(METRIC_TITLES[m] for m in METRIC_COLUMNS), "crops"]),
    ]
    confusion = pooled.get("confusion")
    if confusion and len(confusion) == len(classes):
        parts += [
            _p("Pooled confusion matrix (rows: true class, columns: predicted class)."),
            _table([(c, *row) for c, row in zip(classes, confusion, strict=True)], ["", *classes]),
        ]
    weights = metrics.get("channel_weights")
    if isinstance(weights, dict) and weights:
        parts += [
            _p("Late fusion: weight of each channel's classifier in the fused class probability."),
            _table([tuple(weights.values())], list(weights)),
        ]
    evidence = metrics.get("channel_evidence")
    if isinstance(evidence, dict) and evidence:
        channels = list(next(iter(evidence.values())))
        parts += [
            _p("Share of per-channel Grad-CAM evidence for each class: which channel drives it."),
            _table([(c, *(evidence[c].get(ch) for ch in channels)) for c in evidence], ["", *channels]),
        ]
    return parts


def _factors(ctx: _Context) -> pd.DataFrame:
    if ctx.analysis.factors is None:
        raise NotAvailable("the analysis has no ground-truth factor table (only the synthetic data provides one)")
    return ctx.analysis.factors


def _known_answer_section(ctx: _Context) -> list[str]:
    from ..cells.sample_data import TREATED_SHIFTS

    factors = _factors(ctx)
    check = check_known_answer(ctx.require_latents(), factors, list(TREATED_SHIFTS))
    verdict = "PASSED" if check["passed"] else "FAILED"
    return [
        _p(
            f"The dimension with the largest |Cohen's d| ({check['groups'][1]} vs {check['groups'][0]}) is "
            f"dim {check['dimension']} (d = {check['cohens_d']:+.2f}). Its Spearman correlation with the factors the "
            f"treated group shifts: best {check['best_factor']} ρ = {check['best_rho']:+.2f}. "
            f"Check |ρ| > {check['threshold']}: {verdict}."
        ),
        _table(sorted(check["spearman"].items(), key=lambda kv: -abs(kv[1])), ["shifted factor", "Spearman ρ"]),
    ]


def _disentanglement_section(ctx: _Context) -> list[str]:
    try:
        from ..analysis.disentanglement import dci, mutual_information_gap
    except ImportError as err:
        raise NotAvailable(f"the disentanglement module is not installed ({err})") from err
    summary = ctx.require_summary()
    matched = factors_for_latents(ctx.require_latents(), _factors(ctx))
    names = factor_columns(matched)
    if len(names) < 2:
        raise NotAvailable("fewer than two varying numeric factors")
    values = matched[names].to_numpy(dtype=float)
    mig = mutual_information_gap(summary.mu, values)
    result = dci(summary.mu, values, n_repeats=3)
    rows = [
        (n, mig.gap_per_factor[k], result.accuracy_per_factor[k], int(np.argmax(result.importance[:, k])))
        for k, n in enumerate(names)
    ]
    return [
        _p(
            f"MIG {mig.score:.3f}; DCI disentanglement {result.disentanglement:.3f}, completeness "
            f"{result.completeness:.3f}, informativeness (held-out accuracy) {result.informativeness:.3f}. "
            "Continuous factors are discretised into 20 bins."
        ),
        _table(rows, ["factor", "MIG gap", "DCI accuracy", "most important dim"]),
    ]


def _tracks_section(ctx: _Context) -> list[str]:
    from ..analysis import tracks
    from ..analysis.cell_table import latent_matrix, mu_columns
    from ..analysis.reduce import pca
    from ..cells import track_ids
    from ..figures.tracks import paths_figure

    latents = ctx.require_latents()
    if tracks.TRACK_ID not in latents.columns:
        raise NotAvailable(
            "the cells have no track ids (only time-lapses of tracked cells have them; give them with "
            "'morphospace crops --track-ids' or the Tracks widget)"
        )
    statistics = tracks.track_statistics(latents, mu_columns(latents))
    if statistics.empty:
        raise NotAvailable("no cell lies on a track")
    plane = latents.assign(PC_0=0.0, PC_1=0.0)
    plane[["PC_0", "PC_1"]] = pca(latent_matrix(latents), n=2)
    shown = statistics.sort_values("path_length", ascending=False).head(20)
    colour_by = "group" if "group" in plane.columns and plane["group"].nunique() > 1 else None
    parts = [
        _p(
            f"{track_ids.describe_tracks(latents)}. Per track, in latent units (mu_*) per frame: mean speed "
            "(mean step length per frame), path length, net displacement and straightness (displacement / path "
            "length, 1 = straight). Paths are drawn on the first two principal components of the latent means, "
            "coloured by time, or by group when there are several."
        ),
        _img(paths_figure(plane, ["PC_0", "PC_1"], colour_by=colour_by), "track paths through latent space"),
        _table(shown.itertuples(index=False), list(shown.columns)),
    ]
    if len(statistics) > len(shown):
        parts.append(
            _p(
                f"The {len(shown)} longest of {len(statistics)} tracks are listed; "
                "'morphospace tracks' writes them all."
            )
        )
    try:
        real, shuffled = tracks.smoothness(latents, mu_columns(latents))
        parts.append(
            _p(
                f"Mean step length {real:.4g}, against {shuffled:.4g} for the same cells in shuffled frame "
                f"order (ratio {real / shuffled:.3f}; well below 1: the latent space follows cells over time)."
            )
        )
    except InputError as err:
        parts.append(_p(f"Smoothness not measured: {err}"))
    try:
        comparison = tracks.compare_track_groups(statistics, "group")
    except InputError as err:
        parts.append(_p(f"Groups of tracks not compared: {err}"))
    else:
        a, b = comparison.attrs["groups"]
        parts.append(
            _p(
                f"Tracks of {a} against {b} (one sample per track): Cohen's d (positive: higher in {a}) with "
                "its bootstrap 95 % interval, the two-sided permutation p-value and the Benjamini–Hochberg "
                "q over the measures."
            )
        )
        parts.append(_table(comparison.itertuples(index=False), list(comparison.columns)))
        parts += [_p(note) for note in comparison.attrs["notes"]]
    return parts


def _versions_section(ctx: _Context) -> list[str]:
    analysis = ctx.analysis
    parts = [
        _p(
            f"Report written by napari-morphospace {__version__} on "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}."
        )
    ]
    parts += _manifest_tables(analysis.manifest)
    if analysis.bundle is not None:
        # Only the settings a bundle records, never other keys a hand-edited model.json may carry.
        parts += _model_tables({k: analysis.bundle.config[k] for k in _MODEL_JSON_KEYS if k in analysis.bundle.config})
    if analysis.crop_job is not None:
        # The settings as parsed, never the file's text: a reference to any other file cannot reach the report.
        parts.append("<h3>Crop job</h3>" + _settings_table(to_dict(analysis.crop_job)))
    return parts


def _manifest_tables(manifest: AnalysisFolder) -> list[str]:
    """What analysis.json records: its history, the parts of the folder and the source images."""
    about = [
        ("created", manifest.created),
        ("modified", manifest.modified),
        ("saved by napari-morphospace", manifest.written_by),
        ("format version", manifest.format_version),
    ]
    refs = [(f.name, getattr(manifest, f.name)) for f in dataclasses.fields(manifest)]
    files = [(name, ref.path, ref.absolute) for name, ref in refs if isinstance(ref, FileRef)]
    sources = [(s.group, s.image.absolute, s.labels.absolute if s.labels else "—") for s in manifest.sources]
    parts = [
        "<h3>Analysis folder (analysis.json)</h3>",
        _table(about, None),
        _table(files, ["part", "path in the folder", "absolute path"]),
    ]
    if sources:
        parts.append(_table(sources, ["group", "image", "label image"]))
    if manifest.plot_settings:
        parts.append(_table(settings_rows(manifest.plot_settings), ["plot setting", "value"]))
    return parts


#: Sections of model.json shown as tables of their own, with their titles.
_MODEL_TABLES = {
    "model_settings": "Model",
    "train_settings": "Training settings",
    "provenance": "Training data",
    "versions": "Library versions",
}


def _model_tables(config: Mapping[str, Any]) -> list[str]:
    """model.json as tables: architecture, training settings, data, versions and the rest (history left out)."""
    parts = ["<h3>Model bundle (model.json)</h3>"]
    for key, title in _MODEL_TABLES.items():
        if isinstance(config.get(key), Mapping):
            parts.append(f"<h4>{title}</h4>" + _settings_table(config[key]))
    rest = {k: v for k, v in config.items() if k not in _MODEL_TABLES and k != "history"}
    parts.append("<h4>Input, preprocessing and format</h4>" + _settings_table(rest))
    return parts


_MODEL_JSON_KEYS = (
    "format",
    "format_version",
    "model_settings",
    "latent_dim",
    "input_shape",
    "channel_names",
    "preprocess",
    "label_classes",
    "train_settings",
    "provenance",
    "versions",
)


_BUILDERS: dict[str, Callable[[_Context], list[str]]] = {
    "Data and preprocessing": _data_section,
    "Training": _training_section,
    "What the model learned": _learned_section,
    "Per-dimension KL": _kl_section,
    "Group differences (Cohen's d)": _cohen_section,
    "Inference between the groups": _inference_section,
    "Top dimensions: KDE and violin plots": _distribution_section,
    "Latent traversals": _traversal_section,
    "Difference maps": _difference_section,
    "Grad-CAM": _gradcam_section,
    "Classifier": _classifier_section,
    "Known answer": _known_answer_section,
    "Disentanglement (MIG and DCI)": _disentanglement_section,
    "Tracks through latent space": _tracks_section,
    "Versions and settings": _versions_section,
}


def build_sections(analysis: Analysis, on_step: Callable[[str], None] | None = None) -> list[Section]:
    """Every section of :data:`SECTIONS`, each either with content or with the reason it is not available."""
    ctx = _Context(analysis)
    if analysis.latents is not None:
        try:
            ctx.summary = summarise_latents(analysis.latents)
        except (NotAvailable, InputError) as err:
            ctx.summary_error = str(err)
    else:
        ctx.summary_error = "the analysis has no latent table; train a model and embed the crops"
    sections = []
    for title in SECTIONS:
        if on_step is not None:
            on_step(f"report: {title}")
        try:
            sections.append(Section(title, parts=_BUILDERS[title](ctx)))
        except (NotAvailable, InputError) as err:  # the data do not allow it; the message says why
            sections.append(Section(title, not_available=str(err)))
        except Exception as err:  # a report is still written; the reason is shown and logged
            log.warning("report section %r failed", title, exc_info=True)
            sections.append(Section(title, not_available=f"{type(err).__name__}: {err}"))
    return sections


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #bbb}
img{max-width:100%;display:block;margin:.5em 0}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}
.na{color:#a33;font-style:italic}.problem{color:#a33}nav li{display:inline;margin-right:1em}
"""


def render_html(analysis: Analysis, sections: Sequence[Section]) -> str:
    """The report as one HTML document (every folder-derived string escaped)."""
    title = f"Morphospace report: {analysis.folder.resolve().name}"
    body = [f"<h1>{html.escape(title)}</h1>", _p(f"Analysis folder: {analysis.folder.resolve()}")]
    if analysis.problems or analysis.notes:
        body.append("<h2>Problems found when opening the analysis</h2><ul>")
        body += [f'<li class="problem">{html.escape(p)}</li>' for p in analysis.problems]
        body += [f"<li>{html.escape(n)}</li>" for n in analysis.notes]
        body.append("</ul>")
    body.append(
        "<nav><ul>"
        + "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
        + "</ul></nav>"
    )
    for i, section in enumerate(sections):
        body.append(f'<section id="s{i}"><h2>{html.escape(section.title)}</h2>')
        if section.not_available is not None:
            body.append(f'<p class="na">not available: {html.escape(section.not_available)}</p>')
        else:
            body += section.parts
        body.append("</section>")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR_TAG}<title>'
        f"{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    analysis_folder: str | os.PathLike | Analysis,
    out_path: str | os.PathLike,
    *,
    overwrite: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """Write the self-contained HTML report of an analysis folder to ``out_path`` (atomically).

    Parameters
    ----------
    analysis_folder : path or Analysis
        An analysis folder (opened with :func:`open_analysis`) or an opened analysis.
    out_path : path
        The ``.html`` file to write; an existing file is refused unless ``overwrite``.
    on_step : callable, optional
        Called with a short message before each section (progress).

    Returns
    -------
    Path
        ``out_path``.
    """
    out_path = check_report_target(out_path, overwrite)
    analysis = analysis_folder if isinstance(analysis_folder, Analysis) else open_analysis(analysis_folder)
    atomic_write_text(out_path, render_html(analysis, build_sections(analysis, on_step)))
    return out_path


GENERATOR_TAG = '<meta name="generator" content="napari-morphospace report">'


def is_report(path: str | os.PathLike) -> bool:
    """True for an HTML report written by :func:`write_report` (what ``overwrite`` may replace)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return GENERATOR_TAG in head or "<title>Morphospace report: " in head


def check_report_target(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse a report target before the (slow) report: not .html, a folder, another file, not writable."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"{path.name}: the report is an HTML file; give it a name ending in .html")
    return check_output(path, what="report", kind="file", overwrite=overwrite, is_ours=is_report)


__all__ = [
    "GENERATOR_TAG",
    "SECTIONS",
    "check_report_target",
    "is_report",
    "Section",
    "build_sections",
    "check_known_answer",
    "factor_columns",
    "factors_for_latents",
    "render_html",
    "settings_rows",
    "write_report",
]
