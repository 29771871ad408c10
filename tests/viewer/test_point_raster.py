"""Points drawn into a picture of the view: the same pixels as painting each dot in turn."""

import numpy as np

from napari_morphospace.viewer.point_raster import disc, histogram2d, rasterize_points, top_rows

RED, GREEN, WHITE = (255, 0, 0, 255), (0, 255, 0, 128), (255, 255, 255, 255)


def _paint_in_turn(positions, colors, rect, shape, diameter):
    """The reference: paint each point's dot, in row order, pixel by pixel."""
    height, width = shape
    left, bottom, right, top = rect
    picture = np.zeros((height, width, 4), np.uint8)
    radius = diameter / 2
    for (x, y), color in zip(positions, colors, strict=True):
        column = int(np.floor((x - left) * width / (right - left)))
        row = int(np.floor((y - bottom) * height / (top - bottom)))
        if not (0 <= column < width and 0 <= row < height):
            continue  # a point out of view draws nothing (not even the part of its dot that would reach in)
        for r in range(height):
            for c in range(width):
                if (r - row) ** 2 + (c - column) ** 2 <= radius**2:
                    picture[r, c] = color
    return picture


def test_disc_sizes():
    assert disc(1).sum() == 1
    assert disc(3).sum() == 9  # radius 1.5 reaches the corners of the 3 x 3 square
    assert disc(4).sum() == 13  # radius 2: a 5 x 5 cross-like disc without its corners
    assert disc(0.2).sum() == 1  # never smaller than one pixel


def test_one_point_lands_in_its_pixel_with_row_zero_at_the_bottom():
    # view x 0..10, y 0..5 in a 5 x 10 picture: one data unit per pixel
    picture = rasterize_points(np.array([[2.5, 0.5]]), np.array([RED]), (0, 0, 10, 5), (5, 10), 1)
    assert picture.shape == (5, 10, 4) and picture.dtype == np.uint8
    assert np.flatnonzero(picture[..., 3]).tolist() == [2]  # row 0 (bottom), column 2
    assert picture[0, 2].tolist() == list(RED)


def test_later_rows_are_drawn_on_top_and_points_out_of_view_are_not_drawn():
    positions = np.array([[1.2, 1.2], [1.7, 1.9], [10.0, 1.0], [-0.1, 1.0]])  # two share a pixel; two lie outside
    rows = top_rows(positions, (0, 0, 10, 5), (5, 10), 1)
    assert rows[1, 1] == 1
    assert (rows >= 0).sum() == 1  # the right edge x = 10 and x < 0 are out of view
    picture = rasterize_points(positions, np.array([RED, GREEN, RED, RED]), (0, 0, 10, 5), (5, 10), 1)
    assert picture[1, 1].tolist() == list(GREEN)


def test_dots_match_painting_each_point_in_turn():
    rng = np.random.default_rng(0)
    positions = rng.uniform(-1, 11, size=(300, 2))
    colors = rng.integers(0, 256, size=(300, 4)).astype(np.uint8)
    for diameter in (1, 3, 4, 6.5):
        expected = _paint_in_turn(positions, colors, (0, 0, 10, 8), (24, 30), diameter)
        assert np.array_equal(rasterize_points(positions, colors, (0, 0, 10, 8), (24, 30), diameter), expected)


def test_ring_surrounds_each_dot():
    picture = rasterize_points(np.array([[5.5, 5.5]]), np.array([GREEN]), (0, 0, 11, 11), (11, 11), 3, ring=WHITE)
    colored = np.all(picture == GREEN, axis=-1)
    ringed = np.all(picture == WHITE, axis=-1)
    assert np.array_equal(np.argwhere(colored), np.argwhere(np.ones((3, 3))) + 4)  # the 3 x 3 dot at (5, 5)
    assert ringed.sum() == disc(6).sum() - 9 and not (colored & ringed).any()


def test_density_counts_match_numpy_histogram2d():
    rng = np.random.default_rng(1)
    positions = np.vstack([rng.normal(size=(5000, 2)) * [3, 0.5], [[-20, 0], [20, 4]]]).astype(np.float32)
    counts, (x_edges, y_edges) = histogram2d(positions, 64)
    expected, x_expected, y_expected = np.histogram2d(positions[:, 0], positions[:, 1], bins=64)
    assert np.allclose(x_edges, x_expected) and np.allclose(y_edges, y_expected)
    # float32 positions can fall one bin apart from numpy's float64 edges on a bin boundary: nearly none do
    assert counts.sum() == len(positions) and np.abs(counts - expected.T).sum() <= 4
    assert counts[:, 0].sum() == 1 and counts[-1, -1] == 1  # the extreme points land in the edge bins (last one closed)


def test_a_view_of_no_area_draws_nothing():
    picture = rasterize_points(np.array([[1.0, 1.0]]), np.array([RED]), (1, 0, 1, 5), (4, 4), 3)
    assert picture.shape == (4, 4, 4) and not picture.any()
