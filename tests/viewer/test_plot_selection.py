"""A scatter plot's selection without Qt: highlighted in the image, shared through the session, kept under names."""

import numpy as np
import pandas as pd
from napari.components import ViewerModel

from napari_morphospace.viewer.highlights import SELECTED_CELLS
from napari_morphospace.viewer.plot_selection import PlotSelection
from napari_morphospace.viewer.plot_sources import PlotSources
from napari_morphospace.viewer.session import session_for


def _field(viewer, crop_ids=True):
    """One 10×10 field with cells 1, 2, 3 (crop ids 20, 21, 22)."""
    labels = np.zeros((10, 10), np.int32)
    labels[0:3, 0:3], labels[4:7, 4:7], labels[7:10, 0:3] = 1, 2, 3
    features = pd.DataFrame({"label_id": [1, 2, 3], "mu_0": [0.0, 1.0, 2.0], "mu_1": [2.0, 1.0, 0.0]})
    if crop_ids:
        features.insert(0, "crop_id", [20, 21, 22])
    viewer.add_labels(labels, name="field", features=features)
    return PlotSources(viewer, ["field"])


def test_selected_rows_are_highlighted_and_published_and_a_selection_made_elsewhere_is_followed_not_echoed():
    viewer = ViewerModel()
    changes = []
    selection = PlotSelection(viewer, on_change=lambda: changes.append(selection.rows.tolist()))
    selection.use(_field(viewer))
    session = session_for(viewer)
    published = []
    session.selection_changed.connect(lambda crop_ids: published.append(list(crop_ids)))

    selection.select([0, 2])
    assert session.selection.tolist() == [20, 22] and published == [[20, 22]]
    highlighted = viewer.layers[SELECTED_CELLS].data
    assert set(np.unique(highlighted[viewer.layers["field"].data == 1])) == {1}  # cell 1 drawn
    assert not highlighted[viewer.layers["field"].data == 2].any()  # cell 2 not selected
    selection.select([1], add=True)
    assert selection.rows.tolist() == [0, 1, 2] and session.selection.tolist() == [20, 21, 22]

    session.selection = np.array([21])  # e.g. the Annotate dock, or a script
    assert selection.rows.tolist() == [1] and published[-1] == [21]  # followed, and not published back
    assert changes == [[0, 2], [0, 1, 2], [1]]


def test_named_selections_keep_crop_ids_in_the_session_and_come_back_on_other_sources():
    viewer = ViewerModel()
    selection = PlotSelection(viewer)
    selection.use(_field(viewer))
    selection.select([1, 2])
    selection.save("right")
    assert session_for(viewer).named_selections == {"right": (21, 22)}
    selection.select([0])
    assert selection.recall("right").tolist() == [1, 2] and selection.rows.tolist() == [1, 2]
    selection.keep({"left": (20,)})  # an opened analysis
    assert selection.named.names == ["right", "left"] and selection.recall("left").tolist() == [0]


def test_without_crop_ids_rows_are_selected_and_named_but_not_published():
    viewer = ViewerModel()
    selection = PlotSelection(viewer)
    selection.use(_field(viewer, crop_ids=False))
    selection.select([2])
    selection.save("corner")
    session = session_for(viewer)
    assert len(session.selection) == 0 and session.named_selections == {}
    assert selection.recall("corner").tolist() == [2]
