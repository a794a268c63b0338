"""Heatmap overlay: the inverse of the preprocessing's aspect step, contours, colours."""
from __future__ import annotations

import numpy as np
import pytest

from cxrscreen.app.viewer.overlay import (
    Footprint,
    apply_inverse_aspect,
    apply_level_codes,
    contour_segments,
    heatmap_footprint,
    heatmap_to_image_points,
    overlay_grid_shape,
    overlay_lut,
)
from cxrscreen.engine.preprocess import PreprocessSpec, apply_aspect, apply_resize


def test_footprints_match_apply_aspect() -> None:
    # a 5 x 9 image: crop keeps columns 2..6, pad adds 2 rows above (s = 9)
    assert heatmap_footprint((5, 9), "stretch") == Footprint(0, 0, 9, 5)
    assert heatmap_footprint((5, 9), "center_crop") == Footprint(2, 0, 5, 5)
    assert heatmap_footprint((5, 9), "pad") == Footprint(0, -2, 9, 9)
    img = np.arange(45, dtype=np.float32).reshape(5, 9)
    crop = apply_aspect(img, "center_crop")
    np.testing.assert_array_equal(crop, img[:, 2:7])  # the footprint's columns
    pad = apply_aspect(img, "pad")
    np.testing.assert_array_equal(pad[2:7], img)  # the footprint starts 2 rows above


@pytest.mark.parametrize("aspect", ["stretch", "center_crop", "pad"])
@pytest.mark.parametrize("shape", [(90, 60), (60, 90), (64, 64)])
def test_inverse_then_forward_preprocessing_gives_back_the_heatmap(aspect: str, shape: tuple[int, int]) -> None:
    s = 16
    yy, xx = np.mgrid[0:s, 0:s]
    heatmap = np.sin(yy / 3.0) + np.cos(xx / 4.0)  # smooth: interpolation is faithful
    in_image = apply_inverse_aspect(heatmap, shape, aspect)
    assert in_image.shape == shape
    filled = np.where(np.isnan(in_image), 0.0, in_image).astype(np.float32)
    if aspect == "pad":  # padding is not in the image: compare where the image is
        back = apply_resize(apply_aspect(filled, "pad"), s)
        fp = heatmap_footprint(shape, "pad")
        rows = slice(int(np.ceil(-fp.y * s / fp.height)) + 1, s - int(np.ceil(-fp.y * s / fp.height)) - 1)
        cols = slice(int(np.ceil(-fp.x * s / fp.width)) + 1, s - int(np.ceil(-fp.x * s / fp.width)) - 1)
        np.testing.assert_allclose(back[rows, cols], heatmap[rows, cols], atol=0.06)
    else:
        back = apply_resize(apply_aspect(filled, aspect), s)
        np.testing.assert_allclose(back[1:-1, 1:-1], heatmap[1:-1, 1:-1], atol=0.06)


def test_hot_pixel_lands_where_the_detector_saw_it() -> None:
    # stretch: heatmap pixel (r, c) of S covers image rows r*H/S..(r+1)*H/S
    s, shape = 8, (80, 40)
    heatmap = np.zeros((s, s), np.float32)
    heatmap[2, 5] = 1.0
    img = apply_inverse_aspect(heatmap, shape, "stretch")
    r, c = np.unravel_index(np.argmax(img), img.shape)
    assert 20 <= r < 30 and 25 <= c < 30  # rows 2*10..3*10, cols 5*5..6*5
    # the same through the point mapping: centre of heatmap pixel (2, 5)
    x, y = heatmap_to_image_points(np.array([2.0, 5.0]), shape, "stretch", s)
    assert (x, y) == (27.5, 25.0)


def test_field_crop_box_places_the_heatmap_on_the_field() -> None:
    # the detector cropped rows 10..70 and columns 30..70 of an 80 x 100 image, then stretched
    box = (10, 70, 30, 70)
    assert heatmap_footprint((80, 100), "stretch", box) == Footprint(30, 10, 40, 60)
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[0, 0] = 1.0  # the field's top-left corner
    img = apply_inverse_aspect(heatmap, (80, 100), "stretch", box=box)
    assert np.isnan(img[:10]).all() and np.isnan(img[:, :30]).all() and np.isnan(img[:, 70:]).all()
    r, c = np.unravel_index(np.nanargmax(img), img.shape)
    assert 10 <= r < 18 and 30 <= c < 35  # heatmap pixel (0, 0) covers 7.5 rows x 5 columns of the field
    x, y = heatmap_to_image_points(np.array([0.0, 0.0]), (80, 100), "stretch", 8, box)
    assert (x, y) == (32.5, 13.75)
    with pytest.raises(ValueError, match="box must be"):
        heatmap_footprint((80, 100), "stretch", (10, 90, 0, 100))  # past the bottom


def test_centre_crop_leaves_unseen_sides_empty() -> None:
    img = apply_inverse_aspect(np.ones((4, 4)), (10, 20), "center_crop")
    assert np.isnan(img[:, :5]).all() and np.isnan(img[:, 15:]).all()
    assert not np.isnan(img[:, 5:15]).any()


def test_reduced_grid_covers_the_same_rectangle() -> None:
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[:, 4:] = 1.0  # right half hot
    full = apply_inverse_aspect(heatmap, (400, 400), "stretch")
    small = apply_inverse_aspect(heatmap, (400, 400), "stretch", grid_shape=overlay_grid_shape((400, 400), 100))
    assert small.shape == (100, 100)
    # the half-way column is at the same image x in both grids
    assert np.argmax(full[0] > 0.5) / 400 == pytest.approx(np.argmax(small[0] > 0.5) / 100, abs=0.01)


def test_contour_of_a_disc_is_a_closed_ring_at_the_level() -> None:
    yy, xx = np.mgrid[0:32, 0:32]
    field = np.hypot(yy - 15.5, xx - 15.5)  # distance from the centre
    segs = contour_segments(-field, -8.0)  # inside: distance < 8
    assert len(segs) > 20
    r = np.hypot(segs[..., 0] - 15.5, segs[..., 1] - 15.5)
    np.testing.assert_allclose(r, 8.0, atol=0.15)
    # closed: every end point is shared by exactly two segments
    pts, counts = np.unique(np.round(segs.reshape(-1, 2), 6), axis=0, return_counts=True)
    assert (counts == 2).all()


def test_contour_saddle_and_empty_cases() -> None:
    assert contour_segments(np.zeros((3, 3)), 0.5).shape == (0, 2, 2)  # nothing above
    saddle = np.array([[1.0, 0.0], [0.0, 1.0]])  # tl and br above, centre 0.5
    segs = contour_segments(saddle, 0.6)  # centre below: two separate corners
    assert segs.shape == (2, 2, 2)


def test_level_codes_and_lut() -> None:
    codes = apply_level_codes(np.array([np.nan, 0.0, 0.5, 1.0]))
    np.testing.assert_array_equal(codes, [0, 0, 128, 255])
    cmap = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)
    lut = overlay_lut(cmap, opacity=0.5, floor=0.9)
    assert lut.shape == (256, 4)
    assert (lut[: int(0.9 * 255) + 1, 3] == 0).all()  # at or below the floor: clear
    assert lut[255, 3] == 128 and tuple(lut[255, :3]) == (255, 255, 255)  # top: full colour, alpha = opacity
    with pytest.raises(ValueError):
        overlay_lut(cmap, opacity=1.5, floor=0.5)


def test_preprocess_spec_aspects_are_the_ones_we_invert() -> None:
    # if the engine adds an aspect mode, the overlay must learn it
    from typing import get_args

    from cxrscreen.engine.preprocess import Aspect
    assert set(get_args(Aspect)) == {"stretch", "center_crop", "pad"}
    assert PreprocessSpec().aspect == "stretch"
