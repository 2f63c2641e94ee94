"""The ladder on disk: `rescale4dl rescale` on real data, the manifest, resuming, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.files.images import read_mask, read_pixel_size
from rescale4dl_bmz.data.ladder import build_ladder
from rescale4dl_bmz.data.rescale import rescale_mask


def _tree(folder: Path) -> dict:
    """Every file under a folder with its size and modification time (to prove nothing changed)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _pair(root: Path, name: str, image: np.ndarray, mask: np.ndarray, **image_kwargs) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(images / f"{name}.tif", image, **image_kwargs)
    tifffile.imwrite(masks / f"{name}.tif", mask)
    return images, masks


def _blobs(shape=(64, 64)) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, np.uint16)
    mask[(yy - 20) ** 2 + (xx - 22) ** 2 < 100] = 1
    mask[(yy - 44) ** 2 + (xx - 40) ** 2 < 144] = 2
    image = (100 + 400 * (mask > 0)).astype(np.uint16)
    return image, mask


# ----------------------------------------------------------------------------- real data

def test_cli_on_saureus_writes_factors_with_pixel_sizes(shared_data, tmp_path, capsys):
    src = shared_data / "saureus_crop"
    before = _tree(src)
    out = tmp_path / "ladder"
    rc = main(["rescale", str(src / "images"), str(src / "masks"), "--out", str(out),
               "--factors", "og", "ds2", "ds4"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "ds2" in printed and "0.1598" in printed

    assert read_pixel_size(src / "images" / "1.tif") == pytest.approx(0.0799, rel=1e-3)
    ds2_image, ds2_mask = out / "ds2" / "images" / "1.tif", out / "ds2" / "masks" / "1.tif"
    assert read_pixel_size(ds2_image) == pytest.approx(2 * read_pixel_size(src / "images" / "1.tif"), rel=1e-6)
    assert read_pixel_size(ds2_image) == pytest.approx(0.1598, rel=1e-3)
    assert read_pixel_size(ds2_mask) == pytest.approx(0.1598, rel=1e-3)
    img, lab = tifffile.imread(ds2_image), tifffile.imread(ds2_mask)
    assert img.dtype == np.float32 and img.shape == (256, 256)
    assert lab.dtype == np.uint16 and lab.shape == (256, 256)
    og = tifffile.imread(src / "images" / "1.tif").astype(np.float64)
    np.testing.assert_allclose(img, og.reshape(256, 2, 256, 2).mean(axis=(1, 3)), rtol=1e-6)

    manifest = json.loads((out / "manifest.json").read_text())
    rows = {r["factor"]: r for r in manifest["rows"]}
    assert set(rows) == {"og", "ds2", "ds4"} and manifest["mode"] == "aligned"
    assert rows["og"]["objects"] == rows["og"]["objects_og"] == manifest["pairs"][0]["objects"] == 127
    assert rows["ds4"]["shape"] == [128, 128] and rows["ds4"]["crop"] == {"y": [0, 512], "x": [0, 512]}
    assert rows["ds2"]["pixel_size_um"] == pytest.approx(0.1598, rel=1e-3)
    assert rows["ds4"]["objects"] + rows["ds4"]["vanished"] == 127
    assert (out / "manifest.csv").read_text().splitlines()[0].startswith("factor,scale,name,height,width")
    assert _tree(src) == before  # inputs untouched


def test_unknown_pixel_size_stays_unknown(shared_data, tmp_path):
    src = shared_data / "celegans_bbbc010"
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("A01", "B01"):  # two real wells, linked rather than copied
        (images / f"{name}.tif").symlink_to(src / "images" / f"{name}.tif")
        (masks / f"{name}.tif").symlink_to(src / "masks" / f"{name}.tif")
    manifest = build_ladder(images, masks, tmp_path / "out", factors=["og", "ds8"], crop_anchor="center")
    assert manifest["pixel_size_um"] is None
    assert all(r["pixel_size_um"] is None for r in manifest["rows"])
    assert read_pixel_size(tmp_path / "out" / "ds8" / "images" / "A01.tif") is None
    row = next(r for r in manifest["rows"] if r["factor"] == "ds8" and r["name"] == "A01")
    assert row["crop"] == {"y": [0, 520], "x": [0, 696]} and row["shape"] == [65, 87]  # 520, 696: multiples of 8
    og = next(r for r in manifest["rows"] if r["factor"] == "og" and r["name"] == "A01")
    assert row["objects"] + row["vanished"] == og["objects"] > 0


# ----------------------------------------------------------------------------- manifest details

def test_vanished_objects_are_counted(tmp_path):
    image, mask = _blobs()
    mask[2:4, 60:62] = 77  # a 2×2 object: gone at ds4 and coarser
    images, masks = _pair(tmp_path / "in", "a", image, mask)
    manifest = build_ladder(images, masks, tmp_path / "out", factors="og,2,4,8")
    by = {r["factor"]: r for r in manifest["rows"]}
    assert by["og"]["objects"] == 3 and by["og"]["vanished"] == 0
    assert by["ds2"]["vanished"] == 0
    assert by["ds4"]["vanished"] == 1 and by["ds4"]["vanished_labels"] == [77] and by["ds4"]["objects"] == 2
    assert by["ds8"]["vanished_labels"] == [77]
    written = read_mask(tmp_path / "out" / "ds4" / "masks" / "a.tif")
    assert set(np.unique(written)) == {0, 1, 2}


def test_one_crop_for_every_factor_and_large_labels(tmp_path):
    image = np.arange(70 * 75, dtype=np.float32).reshape(70, 75)
    mask = np.zeros((70, 75), np.uint32)
    mask[10:40, 10:40] = 70000
    mask[40:60, 40:70] = 3
    images, masks = _pair(tmp_path / "in", "big", image, mask)
    out = tmp_path / "out"
    assert main(["rescale", str(images), str(masks), "--out", str(out), "--factors", "0.5,1,4",
                 "--crop", "center", "--pixel-size", "0.5"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {tuple(map(tuple, r["crop"].values())) for r in manifest["rows"]} == {((1, 69), (1, 73))}
    np.testing.assert_array_equal(tifffile.imread(out / "og" / "images" / "big.tif"), image[1:69, 1:73])
    for factor, shape, size in (("up2", (136, 144), 0.25), ("og", (68, 72), 0.5), ("ds4", (17, 18), 2.0)):
        lab = tifffile.imread(out / factor / "masks" / "big.tif")
        assert lab.dtype == np.uint32 and lab.shape == shape and 70000 in lab
        assert read_pixel_size(out / factor / "masks" / "big.tif") == pytest.approx(size)
        assert read_pixel_size(out / factor / "images" / "big.tif") == pytest.approx(size)


def test_channel_picks_one_plane_of_an_rgb_image(tmp_path):
    image, mask = _blobs()
    rgb = np.stack([image // 4, image // 2, image // 3], axis=-1).astype(np.uint8)
    images, masks = _pair(tmp_path / "in", "c", rgb, mask, photometric="rgb")
    out = tmp_path / "out"
    assert main(["rescale", str(images), str(masks), "--out", str(out), "--factors", "og", "--channel", "1"]) == 0
    np.testing.assert_array_equal(tifffile.imread(out / "og" / "images" / "c.tif"), rgb[..., 1])


def test_rerun_resumes_and_refuses_other_settings(tmp_path, capsys):
    image, mask = _blobs()
    images, masks = _pair(tmp_path / "in", "a", image, mask)
    out = tmp_path / "out"
    args = ["rescale", str(images), str(masks), "--out", str(out), "--factors", "og", "ds2", "ds4"]
    assert main(args) == 0
    first = _tree(out)
    (out / "ds2" / "masks" / "a.tif").unlink()  # as if the run had stopped there
    assert main(args) == 0
    second = _tree(out)
    assert second["ds4/images/a.tif"] == first["ds4/images/a.tif"]  # kept, not rewritten
    assert second["ds2/images/a.tif"] != first["ds2/images/a.tif"]  # recomputed with its mask
    np.testing.assert_array_equal(read_mask(out / "ds2" / "masks" / "a.tif"), rescale_mask(mask, "ds2"))
    capsys.readouterr()
    assert main(args + ["--mode", "rescale4dl"]) == 2
    assert "other settings (mode)" in capsys.readouterr().err
    assert _tree(out) == second


# ----------------------------------------------------------------------------- bad input

def _bad_cases(root: Path) -> dict:
    """Each unusable dataset: (images dir, masks dir, extra CLI args, what the message must name)."""
    image, mask = _blobs()
    cases = {}

    def case(name, build, extra=(), names=None):
        d = root / name
        images, masks = build(d)
        cases[name] = (images, masks, list(extra), names(d) if names else None)

    def missing_partner(d):
        images, masks = _pair(d, "a", image, mask)
        tifffile.imwrite(images / "b.tif", image)
        return images, masks
    case("missing_partner", missing_partner, names=lambda d: d / "images" / "b.tif")

    def shape_mismatch(d):
        return _pair(d, "a", image, mask[:, :48])
    case("shape_mismatch", shape_mismatch, names=lambda d: d / "masks" / "a.tif")

    def negative(d):
        return _pair(d, "a", image, -mask.astype(np.int16))
    case("negative_mask", negative, names=lambda d: d / "masks" / "a.tif")

    def fractional(d):
        return _pair(d, "a", image, mask.astype(np.float32) * 0.5)
    case("non_integer_mask", fractional, names=lambda d: d / "masks" / "a.tif")

    def rgb(d):
        return _pair(d, "a", np.stack([image.astype(np.uint8)] * 3, axis=-1), mask, photometric="rgb")
    case("rgb_without_channel", rgb, names=lambda d: d / "images" / "a.tif")

    def stack(d):
        return _pair(d, "a", np.stack([image] * 5), mask)
    case("3d_stack", stack, names=lambda d: d / "images" / "a.tif")

    def empty(d):
        images, masks = _pair(d, "a", image, mask)
        (images / "a.tif").unlink()
        return images, masks
    case("empty_folder", empty, names=lambda d: d / "images")

    def missing(d):
        _, masks = _pair(d, "a", image, mask)
        return d / "nowhere", masks
    case("missing_folder", missing, names=lambda d: d / "nowhere")

    def unreadable(d):
        images, masks = _pair(d, "a", image, mask)
        (images / "a.tif").write_bytes(b"II*\x00 this is not a TIFF")
        return images, masks
    case("unreadable_file", unreadable, names=lambda d: d / "images" / "a.tif")

    def tiny(d):
        return _pair(d, "a", image[:12, :12], mask[:12, :12])  # smaller than ds16
    case("smaller_than_coarsest_factor", tiny, names=lambda d: d / "images" / "a.tif")

    def fine(d):
        return _pair(d, "a", image, mask)
    case("factor_not_power_of_two", fine, extra=["--factors", "og", "3"])
    case("out_inside_input", fine)
    return cases


BAD = ("missing_partner", "shape_mismatch", "negative_mask", "non_integer_mask", "rgb_without_channel",
       "3d_stack", "empty_folder", "missing_folder", "unreadable_file", "smaller_than_coarsest_factor",
       "factor_not_power_of_two", "out_inside_input")


@pytest.fixture(scope="module")
def bad_cases(tmp_path_factory):
    return _bad_cases(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("name", BAD)
def test_bad_input_exit_2_names_the_file_writes_nothing(bad_cases, name, tmp_path, capsys):
    images, masks, extra, culprit = bad_cases[name]
    inputs_before = {d: _tree(d) for d in (images, masks) if d.exists()}
    out = images / "ladder" if name == "out_inside_input" else tmp_path / "out"
    rc = main(["rescale", str(images), str(masks), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rescale4dl rescale: error:"), err
    if culprit is not None:
        assert str(culprit) in err
    if name == "factor_not_power_of_two":
        assert "factor 3" in err
    if name == "out_inside_input":
        assert str(out) in err
    assert not out.exists()
    assert {d: _tree(d) for d in inputs_before} == inputs_before


def test_console_script_entry_point(shared_data, tmp_path):
    """One real subprocess through the installed `rescale4dl` script."""
    script = Path(sys.executable).parent / "rescale4dl"
    src = shared_data / "saureus_crop"
    out = tmp_path / "out"
    proc = subprocess.run([str(script), "rescale", str(src / "images"), str(src / "masks"), "--out", str(out),
                           "--factors", "ds2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ds2" in proc.stdout and (out / "ds2" / "masks" / "1.tif").exists()
    assert read_pixel_size(out / "ds2" / "images" / "1.tif") == pytest.approx(0.1598, rel=1e-3)
