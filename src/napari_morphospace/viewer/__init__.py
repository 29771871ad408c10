"""napari-aware, Qt-free: what the widgets of one viewer share and what they do to its layers.

``session``: the evented session of a viewer (crop set, model, the per-cell
table, selections), keyed on the real viewer. ``features``: the one writer
of ``layer.features``, from the session's per-cell table. ``layers``: lookups
on layers and the few layers the plugin adds (highlights, overlays). Nothing
here imports Qt, so all of it runs from a script with a viewer.
"""
