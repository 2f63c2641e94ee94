"""rescale_image / rescale_mask: alignment of image and mask, label safety, and the rescale4dl recipe."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import default_ladder, parse_factor
from rescale4dl_bmz.data.label_change import compare_labels
from rescale4dl_bmz.data.rescale import (block_majority, catmull_rom_upsample, keys_cubic,
                                    rescale_image, rescale_mask, rescale_pair)

LADDER = default_ladder()  # up4 up2 og ds2 ds4 ds8 ds16

# Disks: (centre y, centre x, radius, label). Subpixel centres, labels beyond uint16 included.
DISKS = [
    (83.3, 90.7, 44.0, 7), (80.6, 255.2, 40.5, 70000), (88.9, 421.45, 46.0, 3),
    (250.15, 85.8, 42.5, 12), (255.55, 251.3, 47.0, 65536), (247.7, 418.2, 39.0, 40),
    (424.4, 92.35, 45.5, 41), (419.85, 258.6, 41.0, 100), (427.1, 423.9, 43.5, 5),
]
SHAPE = (512, 512)


def _render_disks(shape=SHAPE, disks=DISKS, supersample=8):
    """Bright disks on 0: image = exact-ish area coverage (8×8 subsamples per pixel); mask = pixels
    whose centre lies inside the disk."""
    image = np.zeros(shape, np.float32)
    mask = np.zeros(shape, np.uint32)
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    for cy, cx, r, lab in disks:
        y0, y1 = int(cy - r) - 2, int(cy + r) + 3
        x0, x1 = int(cx - r) - 2, int(cx + r) + 3
        yy = (np.arange(y0, y1)[:, None] + sub[None, :]).ravel()
        xx = (np.arange(x0, x1)[:, None] + sub[None, :]).ravel()
        inside = ((yy[:, None] - cy) ** 2 + (xx[None, :] - cx) ** 2) <= r * r
        cover = inside.reshape(y1 - y0, supersample, x1 - x0, supersample).mean(axis=(1, 3))
        image[y0:y1, x0:x1] += 1000.0 * cover
        py, px = np.mgrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1][(py - cy) ** 2 + (px - cx) ** 2 <= r * r] = lab
    return image, mask


@pytest.fixture(scope="module")
def disks():
    return _render_disks()


def _to_grid(c: float, factor) -> float:
    """Where original pixel coordinate c (pixel centres on integers) lands on the factor's grid."""
    return (c + 0.5) / factor.scale - 0.5


def _offsets(image, mask, factor):
    """(mask centroid − image intensity centroid) per disk, in pixels of the factor's grid."""
    out = []
    for cy, cx, r, lab in DISKS:
        ty, tx, half = _to_grid(cy, factor), _to_grid(cx, factor), (r + 8) / factor.scale
        ys = slice(max(int(ty - half), 0), int(ty + half) + 2)
        xs = slice(max(int(tx - half), 0), int(tx + half) + 2)
        win = image[ys, xs].astype(np.float64)
        gy, gx = np.mgrid[ys, xs]
        iy, ix = (win * gy).sum() / win.sum(), (win * gx).sum() / win.sum()
        my, mx = np.argwhere(mask == lab).mean(axis=0)
        out.append((my - iy, mx - ix))
    return np.array(out)


# ----------------------------------------------------------------------------- alignment

@pytest.mark.parametrize("factor", LADDER, ids=str)
def test_aligned_mask_and_image_centroids_coincide(disks, factor):
    image, mask = disks
    small_img, small_mask = rescale_pair(image, mask, factor)
    assert small_img.dtype == np.float32 and small_img.shape == factor.shape(SHAPE)
    assert small_mask.shape == small_img.shape
    off = _offsets(small_img, small_mask, factor)
    assert np.abs(off).max() <= 0.5, f"{factor}: mask/image centroid offsets {off}"
    if factor.is_up:
        # Replication and centre-aligned Catmull-Rom add no shift: the small offset left by the
        # mask's rasterisation at og just scales with the grid.
        np.testing.assert_allclose(off, _offsets(image, mask, parse_factor("og")) / factor.scale, atol=0.02)


@pytest.mark.parametrize("factor", ["up2", "up4"])
def test_rescale4dl_mode_is_shifted_half_an_output_pixel(disks, factor):
    """The known defect of the original recipe: NanoPyx samples the left edge of each output pixel,
    so its upsampled image lies +0.5 output px (down/right) off the replicated labels."""
    image, mask = disks
    f = parse_factor(factor)
    compat = _offsets(rescale_image(image, f, "rescale4dl"), rescale_mask(mask, f, "rescale4dl"), f)
    aligned = _offsets(rescale_image(image, f), rescale_mask(mask, f), f)
    np.testing.assert_allclose(compat - aligned, -0.5, atol=0.02)  # image 0.5 px down/right of mask
    assert np.abs(aligned).mean() < 0.1 < 0.4 < np.abs(compat).mean()


@pytest.mark.parametrize("factor", ["ds2", "ds4"])
def test_rescale4dl_label_pick_is_shifted(disks, factor):
    """skimage rescale(order=0) keeps pixel (s//2, s//2) of each block, half an input pixel past the
    block centre: the labels move −0.5/s output px against the block-mean image."""
    image, mask = disks
    f = parse_factor(factor)
    compat = _offsets(rescale_image(image, f, "rescale4dl"), rescale_mask(mask, f, "rescale4dl"), f)
    aligned = _offsets(rescale_image(image, f), rescale_mask(mask, f), f)
    assert compat.mean() == pytest.approx(-0.5 / f.step, abs=0.04)
    assert abs(aligned.mean()) < 0.03


def test_rescale4dl_mode_darkens_the_first_row_and_column():
    flat = np.full((32, 40), 100.0, np.float32)
    for m in (2, 4):
        compat = rescale_image(flat, 1 / m, "rescale4dl")
        aligned = rescale_image(flat, 1 / m)
        np.testing.assert_allclose(aligned, 100.0, rtol=1e-6)
        # Out-of-range neighbours read as 0: the first row and column come out at half intensity,
        # the next few ring (the dropped negative lobe); only the interior is flat.
        np.testing.assert_allclose(compat[0, 2 * m:-2 * m], 50.0, rtol=1e-6)
        np.testing.assert_allclose(compat[2 * m:-2 * m, 0], 50.0, rtol=1e-6)
        assert np.abs(compat[1:2 * m] - 100).max() > 5
        np.testing.assert_allclose(compat[2 * m:-2 * m, 2 * m:-2 * m], 100.0, rtol=1e-6)


def test_downsampling_an_upsampled_image_returns_it(disks):
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(disks[0], 3.0)
    for m in (2, 4):
        back = rescale_image(rescale_image(smooth, 1 / m), m)
        err = np.abs(back - smooth).max() / np.ptp(smooth)
        assert err < 0.01, f"x{m}: round trip error {err:.4f} of the range"
    ds = rescale_image(smooth, 2)
    assert np.abs(rescale_image(rescale_image(ds, 0.5), 2) - ds).max() / np.ptp(ds) < 0.02


# ----------------------------------------------------------------------------- the arithmetic

def test_block_mean_is_exact():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 65535, (64, 96)).astype(np.uint16)
    for s in (2, 4, 8, 16):
        ref = img.astype(np.float64).reshape(64 // s, s, 96 // s, s).mean(axis=(1, 3))
        np.testing.assert_allclose(rescale_image(img, s), ref, rtol=1e-6)


def test_keys_cubic_is_catmull_rom():
    assert keys_cubic(0.0) == 1 and keys_cubic(1.0) == 0 and keys_cubic(2.0) == 0
    t = np.linspace(0, 1, 11)
    total = keys_cubic(t + 1) + keys_cubic(t) + keys_cubic(1 - t) + keys_cubic(2 - t)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)  # partition of unity
    assert keys_cubic(0.5) == pytest.approx(0.5625) and keys_cubic(1.5) == pytest.approx(-0.0625)


@pytest.mark.parametrize("m", [2, 4, 8])
def test_catmull_rom_matches_the_direct_formula(m):
    """Against a per-pixel evaluation: centre-aligned sampling, edge-replicated border."""
    rng = np.random.default_rng(m)
    x = rng.random((13, 19)).astype(np.float32)
    h, w = x.shape
    ry, rx = (np.arange(h * m) + 0.5) / m - 0.5, (np.arange(w * m) + 0.5) / m - 0.5

    def weights(coords, n):
        base = np.floor(coords).astype(int)
        wmat = np.zeros((coords.size, n))
        for k in range(-1, 3):
            np.add.at(wmat, (np.arange(coords.size), np.clip(base + k, 0, n - 1)),
                      keys_cubic(coords - (base + k)))
        return wmat

    ref = weights(ry, h) @ x.astype(np.float64) @ weights(rx, w).T
    np.testing.assert_allclose(catmull_rom_upsample(x, m), ref, atol=2e-6)


# ----------------------------------------------------------------------------- labels

def test_labels_keep_values_and_never_wrap(disks):
    _, mask = disks
    rng = np.random.default_rng(3)
    noisy = mask.copy()
    noisy[rng.random(mask.shape) < 0.02] = 123456  # scattered pixels of another large label
    labels_in = set(np.unique(noisy).tolist())
    for mode in ("aligned", "rescale4dl"):
        for f in LADDER:
            out = rescale_mask(noisy, f, mode)
            assert out.dtype == np.uint32, (mode, f)
            assert set(np.unique(out).tolist()) <= labels_in, (mode, f)
            if not f.is_down or f.step <= 4:
                assert {70000, 65536} <= set(np.unique(out).tolist())
    small = (mask > 0).astype(np.uint8) * 200
    assert rescale_mask(small, "ds2").dtype == np.uint16
    assert rescale_mask(mask.astype(np.float32), "up2").max() == 70000


def _majority_reference(labels, s):
    """Slow reference: most frequent label; ties to foreground, then to the lowest label."""
    h, w = labels.shape
    out = np.zeros((h // s, w // s), labels.dtype)
    for i in range(h // s):
        for j in range(w // s):
            vals, counts = np.unique(labels[i * s:(i + 1) * s, j * s:(j + 1) * s], return_counts=True)
            out[i, j] = max(zip(counts, vals != 0, -vals.astype(np.int64)))[2] * -1
    return out


@pytest.mark.parametrize("s", [2, 4, 8])
def test_block_majority_matches_reference(disks, s):
    rng = np.random.default_rng(s)
    labels = rng.integers(0, 4, (64, 64)).astype(np.uint16) * (rng.random((64, 64)) < 0.6)
    labels[:32] = disks[1][60:92, 230:294]  # a real object border: two-label blocks
    labels = labels.astype(np.uint32)
    np.testing.assert_array_equal(block_majority(labels, s), _majority_reference(labels, s))


def test_majority_rule_documented_cases():
    half = np.zeros((4, 8), np.uint16)
    half[:, :2] = 9  # exactly half of the first 4×4 block: ties go to the object
    assert rescale_mask(half, "ds4").tolist() == [[9, 0]]
    line = np.zeros((8, 8), np.uint16)
    line[:, 3] = 5  # a 1 px line is thinner than s/2 = 2 px: it vanishes at ds4
    assert rescale_mask(line, "ds4").max() == 0
    assert rescale_mask(line, "ds4", "rescale4dl").max() == 0  # picks pixel (2, 2) of each block
    change = compare_labels(line, rescale_mask(line, "ds4"))
    assert change.vanished == (5,) and change.objects == 0


def test_compare_labels_counts_split_objects():
    ref = np.zeros((8, 16), np.uint16)
    ref[2:6, 1:15] = 4
    cut = ref.copy()
    cut[:, 8] = 0
    change = compare_labels(ref, cut)
    assert change.objects == 1 and change.split == 1 and change.vanished == ()


# ----------------------------------------------------------------------------- errors

def test_bad_input_raises_input_error():
    img = np.zeros((30, 32), np.float32)
    with pytest.raises(InputError, match="not a multiple of 4"):
        rescale_image(img, "ds4")
    assert rescale_image(img, "ds4", "rescale4dl").shape == (7, 8)  # the original cropped silently
    with pytest.raises(InputError, match="2D"):
        rescale_image(np.zeros((3, 8, 8)), "og")
    with pytest.raises(InputError, match="negative"):
        rescale_mask(np.full((8, 8), -1, np.int32), "og")
    with pytest.raises(InputError, match="non-integer"):
        rescale_mask(np.full((8, 8), 0.5, np.float32), "og")
    with pytest.raises(InputError, match="power of two"):
        rescale_image(np.zeros((8, 8)), 3)
    with pytest.raises(InputError, match="mode"):
        rescale_mask(np.zeros((8, 8), np.uint16), "og", mode="bilinear")
    with pytest.raises(InputError, match="differ"):
        rescale_pair(np.zeros((8, 8)), np.zeros((8, 4), np.uint16), "og")


# ----------------------------------------------------------------------------- the original recipe

@pytest.fixture(scope="module")
def nanopyx():
    """NanoPyx's own classes, called the way ReScale4DL 0.1-0.2 called them."""
    with warnings.catch_warnings():  # "OpenCL is disabled", "COMPUTER SAYS NO": expected on CPU
        warnings.simplefilter("ignore")
        from nanopyx.core.transform._le_interpolation_catmull_rom import ShiftAndMagnify as CatmullRom
        from nanopyx.core.transform._le_interpolation_nearest_neighbor import ShiftAndMagnify as Nearest
        from nanopyx.core.transform.binning import rebin_2d

    return CatmullRom, Nearest, rebin_2d


@pytest.mark.filterwarnings("ignore:OpenCL is disabled")
def test_rescale4dl_mode_equals_nanopyx_and_skimage(nanopyx):
    from skimage.transform import rescale as sk_rescale

    CatmullRom, Nearest, rebin_2d = nanopyx
    rng = np.random.default_rng(7)
    img = (rng.random((61, 83)) * 4000).astype(np.uint16)
    lab = rng.integers(0, 90000, (61, 83)).astype(np.uint32)
    for m in (2, 4):
        ref = np.asarray(CatmullRom().run(img.astype(np.float32), 0, 0, m, m))[0]
        np.testing.assert_allclose(rescale_image(img, 1 / m, "rescale4dl"), ref, atol=4000 * 2e-7 * 8)
        ref_lab = np.asarray(Nearest().run(lab.astype(np.float32), 0, 0, m, m))[0]
        np.testing.assert_array_equal(rescale_mask(lab, 1 / m, "rescale4dl"), ref_lab)
    for s in (2, 4, 8, 16):
        crop = (slice(0, 61 - 61 % s), slice(0, 83 - 83 % s))  # bottom/right, as check_crop_img did
        ref = rebin_2d(img[crop].astype(np.float32), s, mode="mean")
        np.testing.assert_allclose(rescale_image(img, s, "rescale4dl"), ref, rtol=1e-6)
        ref_lab = sk_rescale(lab[crop].astype(np.float32), 1 / s, order=0, anti_aliasing=False)
        np.testing.assert_array_equal(rescale_mask(lab, s, "rescale4dl"), ref_lab)
