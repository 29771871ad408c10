"""Pure computation: never imports Qt or napari, so it runs headless and is tested without a display."""
