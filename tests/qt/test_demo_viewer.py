"""The windowed demo opens the sample cells with the widgets docked and builds the crop set."""

from napari_morphospace._qt.demo import open_demo_viewer
from napari_morphospace.core.project.demo import DemoSettings


def test_demo_viewer_builds_crops_of_both_groups(qtbot):
    demo = open_demo_viewer(DemoSettings(n_cells=6, crop_size=48), show=False)
    viewer, widgets = demo.viewer, demo.widgets
    try:
        assert {"control cells", "treated cells", "control membrane"} <= {layer.name for layer in viewer.layers}
        cells = widgets["cells"]
        assert [s.group for s in cells.sources()] == ["control", "treated"]
        cells.build()
        qtbot.waitUntil(lambda: not cells.tasks.busy, timeout=60000)
        assert cells.crop_set.images.shape == (12, 3, 32, 32)  # 48 px boxes resized for the model
    finally:
        viewer.close()


def test_demo_driver_runs_every_step_through_the_widgets(qtbot, tmp_path):
    """Crop → train → save model → embed → statistics and scatter plot, by the widgets' own buttons."""
    from napari_morphospace._qt.demo import DemoDriver

    demo = open_demo_viewer(DemoSettings(n_cells=12, epochs=2, batch_size=8, latent_dim=4), show=False)
    try:
        driver = DemoDriver(demo, tmp_path)
        driver.start()
        statistics = demo.widgets["statistics"]
        qtbot.waitUntil(lambda: driver.session.latents is not None and not statistics.tasks.busy, timeout=120000)
        assert (tmp_path / "model" / "weights.safetensors").is_file()
        assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
        assert len(driver.session.latents) == 24
        features = demo.viewer.layers["treated cells"].features
        assert [f"mu_{i}" for i in range(4)] == [c for c in features.columns if c.startswith("mu_")]
        scatter = demo.widgets["scatter"]
        assert len(scatter._positions) == 24 and scatter._color_by == "group"
        assert "done" in demo.viewer.status
        # The same sign as the report and the headless demo: d = treated − control.
        assert (statistics.summary.condition, statistics.summary.reference) == ("treated", "control")
    finally:
        demo.viewer.close()
