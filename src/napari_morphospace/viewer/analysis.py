"""An analysis folder and a viewer: what to save of a session, and a saved analysis shown again.

napari-aware, Qt-free (the Analysis widget runs these in its tasks; a script
calls them with a viewer). :func:`session_save_plan` collects what the
viewer's session holds, on the GUI thread; :func:`save_session` writes it
(off the GUI thread is fine); :func:`open_with_layers` reads a folder and its
layers; :func:`show_opened` adds the layers and restores the session, so
every widget picks the analysis up through the session's signals.
Nothing in an analysis folder is ever executed.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from napari.layers import Image

from .._analysis_reader import analysis_layers
from .._reader import LayerData
from ..core.cells.crop_set import TRACK_ID, CropSet
from ..core.errors import InputError
from ..core.project.analysis_folder import (
    Analysis,
    AnalysisFolder,
    create_analysis,
    is_analysis_folder,
    open_analysis,
    save_analysis,
)
from ..core.project.annotations import classes_document, classes_from_document
from ..core.training.bundle import Bundle, save_bundle
from .layers import layer_file
from .session import session_for
from .sources import find_sources


@dataclass
class SavePlan:
    """Everything to save, collected from the session and the layers on the GUI thread."""

    folder: Path
    images: list[Path]
    labels: list[Path | None]
    groups: list[str]
    crop_set: CropSet | Path | None
    bundle: Bundle | Path | None
    latents: pd.DataFrame | None
    #: Named selections (name -> crop ids); empty: the folder's selections are kept as they are.
    selections: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: Metrics of the classifier trained in this viewer; None: the folder's classifier.json is kept.
    classifier: dict | None = None
    #: ``crop_id, annotation`` and the classes document; None: the folder's annotations are kept.
    annotations: pd.DataFrame | None = None
    annotation_classes: dict | None = None
    #: The docks open and what the Scatter plot shows (analysis.json ``plot_settings``).
    plot_settings: dict = field(default_factory=dict)


@dataclass
class OpenedAnalysis:
    """An opened analysis folder and its layers; ``warnings``: what reading the layers reported beyond the problems."""

    analysis: Analysis
    layers: list[LayerData]
    warnings: list[str] = field(default_factory=list)


def save_session(plan: SavePlan) -> AnalysisFolder:
    """Write ``plan`` into its folder (created when new; a non-empty non-analysis folder is refused by core).

    A model bundle known only in memory is first written to a temporary
    folder, which :func:`save_analysis` copies into ``model/`` atomically, so
    a failure there leaves the analysis folder untouched.
    """
    with tempfile.TemporaryDirectory(prefix="morphospace-bundle-") as scratch:
        model = plan.bundle
        if isinstance(model, Bundle):
            on_disk = model.folder is not None and model.folder.is_dir()
            model = model.folder if on_disk else save_bundle(model, Path(scratch) / "model")
        manifest = plan.folder if is_analysis_folder(plan.folder) else create_analysis(plan.folder)
        return save_analysis(
            manifest,
            images=plan.images or None,
            labels=plan.labels if plan.images else (),
            groups=plan.groups if plan.images else (),
            crop_set=plan.crop_set,
            model=model,
            latents=plan.latents,
            selections=plan.selections or None,
            classifier=plan.classifier,
            annotations=plan.annotations,
            annotation_classes=plan.annotation_classes,
            plot_settings=plan.plot_settings,
        )


def open_with_layers(folder: Path, *, allow_external: bool = False) -> OpenedAnalysis:
    """Open ``folder`` (model included) and read its layers; the reader's warnings repeat the problems,
    keep the rest."""
    analysis = open_analysis(folder, allow_external=allow_external)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = analysis_layers(folder, allow_external=allow_external)
    known = set(analysis.problems) | set(analysis.notes)
    return OpenedAnalysis(analysis, layers, [str(w.message) for w in caught if str(w.message) not in known])


def layer_sources(layers: Any) -> dict[Path, tuple[Path | None, str]]:
    """Source image file -> (label image file or None, group) for every image layer read from a file.

    Labels layers are paired with their images as the Cells widget pairs them
    (same shape, then same group or name prefix). A Labels layer counts as a
    label image only when it came from a file of its own.
    """
    found: dict[Path, tuple[Path | None, str]] = {}
    for source in find_sources(layers, "labels"):
        labels_file = layer_file(layers[source.objects])
        for name in source.channels:
            image_file = layer_file(layers[name])
            if image_file is not None and found.get(image_file, (None, ""))[0] is None:
                found[image_file] = (labels_file if labels_file != image_file else None, source.group)
    for layer in layers:
        image_file = layer_file(layer) if isinstance(layer, Image) else None
        if image_file is not None and image_file not in found:
            group = layer.metadata.get("group", "") if isinstance(layer.metadata, dict) else ""
            found[image_file] = (None, str(group or ""))
    return found


def session_save_plan(
    viewer: Any, folder: str | Path, opened: Analysis | None = None, plot_settings: dict | None = None
) -> SavePlan:
    """What saving the session of ``viewer`` into ``folder`` writes, read now (on the GUI thread).

    ``opened``: the analysis this viewer opened, whose sources are kept and
    whose model is referenced rather than copied again. ``plot_settings``:
    the docks open and what the Scatter plot shows (the widget knows them).
    """
    session = session_for(viewer)
    if session.crop_set is None and session.bundle is None and session.latents is None:
        raise InputError("the session has no crop set, model or latents yet; build crops in the Cells widget first")
    crop_set: CropSet | Path | None = session.crop_set
    if crop_set is not None and session.crop_set_folder is not None and Path(session.crop_set_folder).is_dir():
        crop_set = Path(session.crop_set_folder)  # saved already: referenced, not copied
    bundle: Bundle | Path | None = session.bundle
    if opened is not None and bundle is not None and bundle is opened.bundle:
        bundle = opened.manifest.path_of("model") or bundle
    sources = _sources(viewer.layers, opened)
    cells = session.cells
    annotated = cells is not None and bool(session.annotation_classes)
    return SavePlan(
        folder=Path(folder),
        images=list(sources),
        labels=[v[0] for v in sources.values()],
        groups=[v[1] for v in sources.values()],
        crop_set=crop_set,
        bundle=bundle,
        latents=session.latents,
        selections=session.named_selections,
        classifier=session.classifier_metrics,
        annotations=cells[["crop_id", "annotation"]] if annotated and cells is not None else None,
        annotation_classes=classes_document(session.annotation_classes) if annotated else None,
        plot_settings=plot_settings or {},
    )


def _sources(layers: Any, opened: Analysis | None) -> dict[Path, tuple[Path | None, str]]:
    """The opened analysis's sources (found or as recorded), then image files of layers it does not have."""
    sources: dict[Path, tuple[Path | None, str]] = {}
    if opened is not None:
        root = opened.folder
        for ref in opened.manifest.sources:
            labels = (ref.labels.resolve(root) or Path(ref.labels.absolute)) if ref.labels is not None else None
            sources[(ref.image.resolve(root) or Path(ref.image.absolute)).resolve()] = (labels, ref.group)
    for image, value in layer_sources(layers).items():
        sources.setdefault(image, value)
    return sources


def show_opened(viewer: Any, opened: OpenedAnalysis) -> int:
    """Add the layers of an opened analysis to ``viewer`` and restore its session; returns the number of layers added.

    The crop set, model, per-cell table (annotations and track ids included)
    and named selections become the session's.
    """
    analysis, session = opened.analysis, session_for(viewer)
    before = len(viewer.layers)
    for data, kwargs, kind in opened.layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    # The folders first, so listeners of crop_set_changed see where the crop set and annotations live.
    session.analysis_folder = analysis.folder
    session.crop_set_folder = analysis.manifest.path_of("crop_set") if analysis.crop_set is not None else None
    session.crop_set = analysis.crop_set
    _restore_annotations(session, analysis)
    session.bundle = analysis.bundle
    session.latents = analysis.latents
    _restore_track_ids(session, analysis)
    session.named_selections = analysis.selections
    return len(viewer.layers) - before


def _restore_annotations(session: Any, analysis: Analysis) -> None:
    """The saved annotations and classes into the session
    (the Annotate widget, when open, reads them from the folder)."""
    if session.cells is None or analysis.annotations is None:
        return
    session.set_annotations(analysis.annotations.set_index("crop_id")["annotation"])
    if analysis.annotation_classes is not None:
        try:
            session.annotation_classes = classes_from_document(analysis.annotation_classes)
        except InputError:
            pass  # the folder's problems already name a damaged classes file


def _restore_track_ids(session: Any, analysis: Analysis) -> None:
    """Track ids given in the Tracks widget were saved with the latents (the crop table has none): back to the cells."""
    latents = analysis.latents
    if latents is not None and TRACK_ID in latents.columns and session.cells is not None:
        session.set_columns(latents["crop_id"], {TRACK_ID: latents[TRACK_ID].to_numpy()})
