"""Rescaling streamed in row bands: the same bits as the whole image, written as one TIFF with its
pixel size, and a ladder that never holds a whole output image."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from rescale4dl_bmz.data import ladder
from rescale4dl_bmz.data.rescale import (UPSAMPLE_TILE, catmull_rom_rows, image_bands, mask_bands, rescale_image,
                                         rescale_mask)
from rescale4dl_bmz.factors import default_ladder
from rescale4dl_bmz.files import band_writer
from rescale4dl_bmz.files.band_writer import stored_shape, write_tiff_rows
from rescale4dl_bmz.files.images import read_image, read_mask, read_pixel_size, write_tiff


FACTORS = ["up8", *(f.name for f in default_ladder())]  # up8 up4 up2 og ds2 ds4 ds8 ds16
MODES = ("aligned", "rescale4dl")


def _same_bits(bands, whole: np.ndarray) -> None:
    parts = list(bands)
    stacked = np.concatenate(parts)
    assert stacked.dtype == whole.dtype and stacked.shape == whole.shape == bands.shape
    assert stacked.tobytes() == whole.tobytes()


def _aligned_input(array: np.ndarray, factor: str, mode: str) -> np.ndarray:
    """Aligned downsampling needs whole blocks: crop bottom/right to 16 (the coarsest step)."""
    if mode == "aligned" and factor.startswith("ds"):
        return array[: array.shape[0] // 16 * 16, : array.shape[1] // 16 * 16]
    return array


# ----------------------------------------------------------------------------- bands = whole image

@pytest.fixture(scope="module")
def real_pairs(shared_data):
    """Three real pairs, their top 200 rows: uint16 brightfield 696 wide (worms) and 512 wide (E. coli),
    fluorescence 512 wide (S. aureus)."""
    names = [("celegans_bbbc010", "A01"), ("ecoli_colicoords", None), ("saureus_crop", "1")]
    pairs = []
    for folder, name in names:
        images = shared_data / folder / "images"
        path = images / f"{name}.tif" if name else sorted(images.glob("*.tif"))[0]
        pairs.append((read_image(path)[:200], read_mask(shared_data / folder / "masks" / path.name)[:200]))
    return pairs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("band_bytes", [1, 300_000])
def test_bands_of_real_data_are_the_whole_image_bit_for_bit(real_pairs, mode, band_bytes):
    for image, mask in real_pairs:
        for factor in FACTORS:
            x, m = _aligned_input(image, factor, mode), _aligned_input(mask, factor, mode)
            _same_bits(image_bands(x, factor, mode, band_bytes), rescale_image(x, factor, mode))
            _same_bits(mask_bands(m, factor, mode, band_bytes), rescale_mask(m, factor, mode))


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (9, 40), (17, 23), (33, 65), (48, 16), (50, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.uint16, np.int32, bool])
def test_bands_at_odd_sizes_and_types(shape, dtype):
    """Sizes not a multiple of the upsampling tile (8 rows) or of the step, 1-pixel images, the
    bottom and right padding of both border rules, and every input type."""
    rng = np.random.default_rng(sum(shape))
    image = (rng.random(shape) * 300).astype(dtype)
    labels = rng.integers(0, 4, shape).astype(np.uint32)
    labels[0, 0] = 70000 if dtype is np.int32 else labels[0, 0]  # uint32 labels once
    for mode in MODES:
        for factor in FACTORS:
            step = int(factor[2:]) if factor.startswith("ds") else 1
            if mode == "aligned" and (shape[0] % step or shape[1] % step):
                continue
            for band_bytes in (1, 64, 1000):
                _same_bits(image_bands(image, factor, mode, band_bytes), rescale_image(image, factor, mode))
                _same_bits(mask_bands(labels, factor, mode, band_bytes), rescale_mask(labels, factor, mode))


def test_upsampling_bands_start_on_a_tile():
    image = np.ones((20, 5), np.float32)
    assert catmull_rom_rows(image, 2, UPSAMPLE_TILE, 20).shape == (24, 10)
    with pytest.raises(ValueError, match="multiple"):
        catmull_rom_rows(image, 2, 3, 20)
    with pytest.raises(ValueError):
        catmull_rom_rows(image, 2, 8, 21)


def test_one_band_unless_asked_and_whole_checks_input():
    image = np.zeros((64, 64), np.float32)
    assert len(list(image_bands(image, "up2"))) == 1
    assert len(list(image_bands(image, "up2", band_bytes=64 * 2 * 4 * 2 * UPSAMPLE_TILE))) == 64 // UPSAMPLE_TILE
    with pytest.raises(Exception, match="multiple of 16"):
        image_bands(np.zeros((20, 20)), "ds16", "aligned", 1)  # refused before any band is asked for


# ----------------------------------------------------------------------------- the TIFF written in bands

@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.uint32, np.uint8])
@pytest.mark.parametrize("pixel", [None, 0.0799])
def test_written_in_bands_reads_back_as_write_tiff_writes_it(tmp_path, dtype, pixel):
    rng = np.random.default_rng(0)
    array = (rng.random((301, 257)) * 80000).astype(dtype)
    write_tiff(tmp_path / "whole.tif", array, pixel)
    bands = [array[i: i + 37] for i in range(0, 301, 37)]  # 37 rows: never a whole strip
    write_tiff_rows(tmp_path / "bands.tif", array.shape, dtype, bands, pixel)

    back = read_mask(tmp_path / "bands.tif") if dtype != np.float32 else read_image(tmp_path / "bands.tif")
    assert back.dtype == array.dtype and np.array_equal(back, array)
    assert read_pixel_size(tmp_path / "bands.tif") == read_pixel_size(tmp_path / "whole.tif")
    assert read_pixel_size(tmp_path / "bands.tif") == (None if pixel is None else pytest.approx(pixel, rel=1e-9))
    assert stored_shape(tmp_path / "bands.tif") == array.shape
    with tifffile.TiffFile(tmp_path / "whole.tif") as a, tifffile.TiffFile(tmp_path / "bands.tif") as b:
        assert a.is_imagej == b.is_imagej == (dtype != np.uint32)
        assert a.imagej_metadata == b.imagej_metadata
        for tag in ("XResolution", "YResolution", "ResolutionUnit", "ImageDescription"):
            assert _tag(a, tag) == _tag(b, tag)
        compression = b.pages[0].compression
    assert compression == (tifffile.COMPRESSION.NONE if dtype == np.float32 else tifffile.COMPRESSION.ADOBE_DEFLATE)


def _tag(tif: tifffile.TiffFile, name: str):
    tag = tif.pages[0].tags.get(name)
    return None if tag is None else tag.value


def test_bands_that_do_not_make_the_image_leave_no_file(tmp_path):
    array = np.zeros((10, 4), np.float32)
    for bands in ([array[:6]], [array, array[:1]], [array[:, :3]], [array.astype(np.float64)]):
        with pytest.raises(ValueError):
            write_tiff_rows(tmp_path / "x.tif", array.shape, np.float32, bands)
    assert list(tmp_path.iterdir()) == []


def test_image_over_classic_tiff_limit_is_bigtiff_with_its_pixel_size(tmp_path, monkeypatch):
    monkeypatch.setattr(band_writer, "CLASSIC_TIFF_LIMIT", 1000)  # the rule without writing 4 GB
    array = np.arange(64 * 40, dtype=np.float32).reshape(64, 40)
    write_tiff_rows(tmp_path / "big.tif", array.shape, array.dtype, [array[:30], array[30:]], 0.25)
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff and tif.is_imagej
    assert read_pixel_size(tmp_path / "big.tif") == pytest.approx(0.25)
    assert np.array_equal(read_image(tmp_path / "big.tif"), array)


# ----------------------------------------------------------------------------- the ladder, streamed

def test_streamed_ladder_on_real_data_equals_whole_image_rescaling(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ladder, "BAND_BYTES", 50_000)  # many bands per image
    src = shared_data / "saureus_crop"
    out = tmp_path / "out"
    ladder.build_ladder(src / "images", src / "masks", out, factors="up2,og,ds2,ds4")
    image, mask = read_image(src / "images" / "1.tif"), read_mask(src / "masks" / "1.tif")
    pixel = read_pixel_size(src / "images" / "1.tif")
    for factor, scale in (("up2", 0.5), ("og", 1), ("ds2", 2), ("ds4", 4)):
        written_image = read_image(out / factor / "images" / "1.tif")
        written_mask = read_mask(out / factor / "masks" / "1.tif")
        assert written_image.tobytes() == rescale_image(image, factor).tobytes()
        assert np.array_equal(written_mask, rescale_mask(mask, factor))
        for kind in ("images", "masks"):
            assert read_pixel_size(out / factor / kind / "1.tif") == pytest.approx(pixel * scale, rel=1e-9)
    # a rerun keeps what exists and reports the same manifest (shapes read from the headers)
    first = (out / "manifest.json").read_text()
    (out / "manifest.json").unlink()
    ladder.build_ladder(src / "images", src / "masks", out, factors="up2,og,ds2,ds4")
    assert (out / "manifest.json").read_text() == first


def test_a_ladder_never_holds_a_whole_output_image(tmp_path, monkeypatch):
    """Python-side allocations (numpy included) peak well below the largest output image (about
    0.33x here; 1.6x when each factor is computed whole)."""
    monkeypatch.setattr(ladder, "BAND_BYTES", 256 * 1024)
    rng = np.random.default_rng(0)
    image = rng.random((384, 384)).astype(np.float32)
    mask = np.zeros((384, 384), np.uint16)
    mask[100:200, 50:300] = 1
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    tifffile.imwrite(tmp_path / "masks" / "a.tif", mask)
    largest = 384 * 4 * 384 * 4 * 4  # up4, float32: 9.4 MB
    ladder.build_ladder(tmp_path / "images", tmp_path / "masks", tmp_path / "warm", factors="og")  # imports
    tracemalloc.start()
    try:
        ladder.build_ladder(tmp_path / "images", tmp_path / "masks", tmp_path / "out", factors="up4,og,ds2")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read_image(tmp_path / "out" / "up4" / "images" / "a.tif").shape == (1536, 1536)
    assert peak < 0.5 * largest, f"peak {peak / 1e6:.1f} MB for a {largest / 1e6:.1f} MB output image"
