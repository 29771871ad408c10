"""core.figures: figures drawn from computed numbers, rendered to file contents; the room's own parts."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from napari_morphospace.core.analysis.latent_summary import summarise_latents
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.figures.cover import COVER_SIZE, decoder_cover, encoder_cover
from napari_morphospace.core.figures.render import render_figure
from napari_morphospace.core.figures.statistics import summary_figures
from napari_morphospace.core.figures.traversal import group_traversal_figure


@pytest.mark.parametrize("file_format, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_a_figure_renders_as_file_contents_and_stays_on_its_canvas(file_format, magic):
    figure = Figure(figsize=(2, 1))
    figure.add_subplot().plot([0, 1], [1, 0])
    canvas = FigureCanvasAgg(figure)  # stands for the Qt canvas a dock shows it on
    assert render_figure(figure, format=file_format).startswith(magic)
    assert figure.canvas is canvas


def test_render_size_follows_dpi_and_unknown_formats_are_refused():
    figure = Figure(figsize=(2, 1))
    png = render_figure(figure, dpi=50)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (100, 50)  # 2 x 1 inches at 50 dots per inch
    with pytest.raises(ValueError, match="'jpg' is not supported"):
        render_figure(figure, format="jpg")


def test_summary_figures_show_the_reference_first_whatever_the_table_order():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((40, 3))
    mu[:20, 0] += 3.0  # the treated cells come first in the table and differ in dimension 0
    table = pd.DataFrame(mu, columns=["mu_0", "mu_1", "mu_2"]).assign(group=["treated"] * 20 + ["control"] * 20)
    summary = summarise_latents(table, "group", condition="treated", reference="control")
    figures = summary_figures(summary, top=2)
    assert set(figures) == {"kl", "forest", "kde", "violin"}
    assert "logvar_* columns" in figures["kl"]  # no log-variances: the reason instead of a figure
    kde = figures["kde"]
    assert [t.get_text() for t in kde.axes[0].get_legend().get_texts()] == ["control", "treated"]
    assert kde.axes[0].get_title() == "mu_0"  # the largest |d| first
    violin_ticks = [t.get_text() for t in figures["violin"].axes[0].get_xticklabels()]
    assert violin_ticks == ["control", "treated"]


def test_summary_figures_of_one_group_are_refused_with_what_to_do():
    table = pd.DataFrame({"mu_0": [0.0, 1.0, 2.0], "group": ["a", "a", "a"]})
    with pytest.raises(InputError, match="Cohen's d compares two groups"):
        summary_figures(summarise_latents(table))


def test_covers_have_the_zoo_shape():
    crops = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    encoder = encoder_cover(crops, crops[:, :, ::-1])
    assert tuple(encoder.get_size_inches()) == COVER_SIZE == (8, 4)
    assert [t.get_text() for t in encoder.axes[0].get_yticklabels()] == ["crop", "decoded"]
    grid = np.stack([crops, crops])  # 2 dimensions x 3 steps
    decoder = decoder_cover(grid, [4, 1])
    assert tuple(decoder.get_size_inches()) == COVER_SIZE
    assert [decoder.axes[i].get_ylabel() for i in (0, 3)] == ["dim 4", "dim 1"]


def test_difference_figure_of_a_thin_volume_shows_the_absolute_map_and_an_empty_ssim_panel():
    from napari_morphospace.core.analysis.difference import compare_images
    from napari_morphospace.core.figures.maps import difference_figure

    low = np.zeros((1, 4, 16, 16), np.float32)
    high = low.copy()
    high[0, :, 5, 6] = 0.5
    maps = {"low": low, "high": high, **compare_images(low, high)}
    assert maps["dissimilarity"] is None and "4 pixels along Z" in maps["ssim_message"]
    figure = difference_figure([(0, maps)])
    absolute, ssim = (np.asarray(figure.axes[i].images[0].get_array()) for i in (2, 3))
    assert absolute[5, 6] == pytest.approx(0.5) and absolute.sum() == pytest.approx(0.5)
    assert not ssim.any()


def test_group_traversal_figure_labels_rows_with_groups():
    traversals = {"ctrl": np.zeros((3, 1, 8, 8), np.float32), "drug": np.ones((3, 1, 8, 8), np.float32)}
    figure = group_traversal_figure(traversals)
    assert [figure.axes[i].get_ylabel() for i in (0, 3)] == ["ctrl", "drug"]
    assert len(figure.axes) == 6
