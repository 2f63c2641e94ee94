"""Morphology on synthetic disks and rods rendered at every factor, and on the real S. aureus mask."""

from __future__ import annotations

import numpy as np
import pytest

from rescale4dl_bmz.factors import default_ladder
from rescale4dl_bmz.metrics import object_morphology, object_width
from rescale4dl_bmz.metrics.morphology import COLUMNS

LADDER = default_ladder()   # up4 .. ds16
DISK_DIAMETER_OG = 32.0     # 128 px at up4, 2 px at ds16
ROD_WIDTH_OG = 48.0         # 192 px at up4, 3 px at ds16
ROD_LENGTH_OG = 160.0


def _render_rods(width: float, length: float, angles, offset=(0.3, 0.6)) -> np.ndarray:
    """Spherocylinders (capsules) of a given width and total length, one label per angle."""
    pad = int(width) + 4
    size = int(np.ceil(length + 2 * pad))
    out = np.zeros((size, size * len(angles)), np.uint16)
    yy, xx = np.mgrid[:size, :size].astype(float)
    c = size / 2
    for k, angle in enumerate(angles):
        a = np.deg2rad(angle)
        u = (xx - c - offset[1]) * np.cos(a) + (yy - c - offset[0]) * np.sin(a)
        v = -(xx - c - offset[1]) * np.sin(a) + (yy - c - offset[0]) * np.cos(a)
        half = (length - width) / 2
        inside = (u - np.clip(u, -half, half)) ** 2 + v ** 2 <= (width / 2) ** 2
        out[:, k * size:(k + 1) * size][inside] = k + 1
    return out


def _render_disk(diameter: float, offset=(0.25, 0.4)) -> np.ndarray:
    return _render_rods(diameter, diameter, [0], offset)


def test_columns_and_a_rectangle():
    lab = np.zeros((30, 50), np.uint8)
    lab[5:15, 5:45] = 4                       # 10 x 40: width 10 (the two middle rows sit 5 px from the edge)
    m = object_morphology(lab)
    assert tuple(m) == COLUMNS
    assert (m["label"][0], m["area"][0]) == (4, 400)
    assert m["width"][0] == 10.0 and m["max_inscribed_diameter"][0] == 10.0
    assert m["equivalent_diameter"][0] == pytest.approx(2 * np.sqrt(400 / np.pi))
    assert m["perimeter"][0] == pytest.approx(2 * 39 + 2 * 9)   # pixel-centre contour of a rectangle
    assert m["circularity"][0] == pytest.approx(4 * np.pi * 400 / 96 ** 2)


def test_perimeter_matches_scikit_image_and_objects_are_measured_alone():
    from skimage.measure import perimeter, regionprops

    rng = np.random.default_rng(1)
    lab = np.zeros((64, 64), np.uint16)
    for k in range(1, 30):                    # random touching rectangles, later ones on top
        y, x, h, w = rng.integers(0, 50, 2).tolist() + rng.integers(2, 14, 2).tolist()
        lab[y:y + h, x:x + w] = k
    m = object_morphology(lab)
    props = regionprops(lab)
    assert list(m["label"]) == [p.label for p in props]
    np.testing.assert_allclose(m["perimeter"], [perimeter(np.pad(p.image, 1), 4) for p in props], atol=1e-9)
    np.testing.assert_array_equal(m["area"], [p.area for p in props])


def test_empty_and_tiny_objects():
    m = object_morphology(np.zeros((8, 8), np.uint8))
    assert all(len(v) == 0 for v in m.values())
    one = np.zeros((5, 5), np.uint8)
    one[2, 2] = 1
    m = object_morphology(one)
    assert m["area"][0] == 1 and m["width"][0] == 2.0 and np.isnan(m["circularity"][0])


@pytest.mark.parametrize("factor", LADDER, ids=str)
def test_disk_equivalent_diameter_within_one_pixel_at_every_factor(factor):
    true = DISK_DIAMETER_OG / factor.scale
    m = object_morphology(_render_disk(true))
    assert abs(m["equivalent_diameter"][0] - true) <= 1.0
    # EDT widths see a digital disk through pixel centres: within 2 px (or 2 %) of the diameter.
    assert abs(m["width"][0] - true) <= max(2.0, 0.02 * true)
    assert abs(m["max_inscribed_diameter"][0] - true) <= max(2.0, 0.02 * true)


@pytest.mark.parametrize("factor", LADDER, ids=str)
def test_rod_width_within_one_pixel_at_every_factor(factor):
    width = ROD_WIDTH_OG / factor.scale
    angles = [0, 30, 60] if width <= 48 else [30]  # one angle for the big renderings (speed)
    m = object_morphology(_render_rods(width, ROD_LENGTH_OG / factor.scale, angles))
    assert len(m["label"]) == len(angles)
    np.testing.assert_array_less(np.abs(m["width"] - width), 1.0 + 1e-9)


def test_measures_scale_with_the_factor():
    eq, widths = [], []
    for f in LADDER:
        eq.append(object_morphology(_render_disk(DISK_DIAMETER_OG / f.scale))["equivalent_diameter"][0] * f.scale)
        widths.append(object_width(_render_rods(ROD_WIDTH_OG / f.scale, ROD_LENGTH_OG / f.scale, [30]) > 0)
                      * f.scale)
    # Back in original pixels, every factor measures the same object (within 1 pixel of that factor).
    for f, e, w in zip(LADDER, eq, widths):
        assert abs(e - DISK_DIAMETER_OG) <= f.scale and abs(w - ROD_WIDTH_OG) <= f.scale


@pytest.mark.parametrize("step", [2, 4, 8])
def test_width_of_nearest_upsampled_rods_scales(step):
    """Pixel replication makes staircase edges; widths still follow the factor (within 10 %)."""
    rods = _render_rods(9.0, 40.0, [0, 20, 45, 70])
    up = np.repeat(np.repeat(rods, step, 0), step, 1)
    m = object_morphology(up)
    np.testing.assert_allclose(m["width"] / (9.0 * step), 1.0, atol=0.1)


def test_width_doubles_on_the_real_saureus_mask_upsampled(shared_data):
    import tifffile

    mask = tifffile.imread(shared_data / "saureus_crop" / "masks" / "1.tif")
    up = np.repeat(np.repeat(mask, 2, 0), 2, 1)
    og, up2 = object_morphology(mask), object_morphology(up)
    assert len(og["label"]) == 127
    assert np.median(up2["width"]) / np.median(og["width"]) == pytest.approx(2.0, abs=0.1)
    assert np.median(up2["width"] / og["width"]) == pytest.approx(2.0, abs=0.1)
    assert np.median(up2["equivalent_diameter"]) / np.median(og["equivalent_diameter"]) == pytest.approx(2.0, abs=0.02)
    # The literal 2 x median EDT on the skeleton is what spurs break (they pull the median down).
    assert np.median(up2["width_skeleton"]) / np.median(og["width_skeleton"]) < 1.6
    # Circle-equivalent diameter of the cocci, as the data README states (about 13.9 px).
    assert np.median(og["equivalent_diameter"]) == pytest.approx(13.9, abs=0.1)


def test_long_skeletons_use_a_kd_tree_with_the_same_result():
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    from rescale4dl_bmz.metrics.morphology import _skeleton_thickness

    obj = np.pad(np.repeat(np.repeat(_render_rods(9.0, 60.0, [25]) > 0, 4, 0), 4, 1), 1)
    dist, skel = ndi.distance_transform_edt(obj), skeletonize(obj)
    ys, xs = (v.astype(np.int64) for v in np.nonzero(skel))
    radius = dist[ys, xs]
    radius2 = np.rint(radius ** 2).astype(np.int64)
    dense = _skeleton_thickness(ys, xs, radius, radius2)
    np.testing.assert_array_equal(_skeleton_thickness(ys, xs, radius, radius2, dense=0), dense)
    assert np.all(dense >= radius) and dense.max() == radius.max()
