"""The ImageJ bridge with a real ImageJ 1.x (Debian's ij.jar under a private Xvfb): no mocks.

One JVM (module-scoped session) serves every test but the CLI's own run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from rescale4dl_bmz.cli import main as cli
from rescale4dl_bmz.files.folders import list_images
from rescale4dl_bmz.files.images import read_image, read_mask, read_pixel_size, write_tiff
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.data.labels import instance_to_semantic
from test_labels import deepbacs_loop, hand_cases, inner_loop

MASK_SETS = ("celegans_bbbc010/masks", "ecoli_colicoords/masks", "saureus_crop/masks")


def _imagej_missing() -> str | None:
    from rescale4dl_bmz.imagej.install import ImageJUnavailable, check_tools, find_fiji, find_ij_jar

    try:
        fiji = find_fiji()
        if fiji is None:
            find_ij_jar()
        check_tools(fiji)
    except (ImageJUnavailable, InputError) as exc:
        return str(exc)
    return None


MISSING = _imagej_missing()
needs_imagej = pytest.mark.skipif(MISSING is not None, reason=f"ImageJ unavailable: {MISSING}")


@pytest.fixture(scope="module")
def ij():
    """One ImageJ session (one JVM) for the module."""
    if MISSING is not None:
        pytest.skip(f"ImageJ unavailable: {MISSING}")
    from rescale4dl_bmz.imagej.bridge import ImageJ

    with ImageJ(timeout=60) as session:
        yield session


@pytest.fixture
def macro_dir(tmp_path) -> Path:
    return tmp_path


def test_hand_cases_match_the_rule(ij):
    for name, mask in hand_cases().items():
        np.testing.assert_array_equal(ij.instance_to_semantic(mask, name=name), deepbacs_loop(mask), err_msg=name)
        np.testing.assert_array_equal(ij.instance_to_semantic(mask, "inner", name=name), inner_loop(mask),
                                      err_msg=name)


def test_large_labels_stay_exact(ij):
    """Labels beyond uint16 travel as 32-bit float, exact up to 2^24; neighbours differing by 1 still differ."""
    mask = np.zeros((6, 8), np.uint32)
    mask[1:4, 1:4] = 16_777_215
    mask[1:4, 4:7] = 16_777_214
    mask[4, 2:5] = 70_000
    np.testing.assert_array_equal(ij.instance_to_semantic(mask), deepbacs_loop(mask))
    with pytest.raises(InputError, match="2\\^24"):
        ij.instance_to_semantic(np.full((3, 3), 2 ** 24 + 1, np.uint32))


def test_every_real_mask_identical_in_python_and_imagej(ij, shared_data):
    files = [f for sub in MASK_SETS for f in list_images(shared_data / sub)]
    assert len(files) == 48 + 12 + 1
    for f in files:
        mask = read_mask(f)
        np.testing.assert_array_equal(ij.instance_to_semantic(mask, name=str(f)), instance_to_semantic(mask),
                                      err_msg=str(f))
    for f in files[::10]:  # the symmetric style on a sample of them
        mask = read_mask(f)
        np.testing.assert_array_equal(ij.instance_to_semantic(mask, "inner", name=str(f)),
                                      instance_to_semantic(mask, "inner"), err_msg=str(f))


def test_macro_opens_the_file_itself(ij, shared_data, tmp_path):
    src = shared_data / "saureus_crop" / "masks" / "1.tif"
    out = ij.semantic_file(src, tmp_path / "1.tif")
    from tifffile import imread

    np.testing.assert_array_equal(imread(out), instance_to_semantic(read_mask(src)))
    assert not list(tmp_path.glob(".*part*"))  # the temporary name is gone


def test_broken_macro_raises_naming_macro_file_and_line(ij, macro_dir):
    from rescale4dl_bmz.imagej.bridge import ImageJError

    broken = macro_dir / "broken.ijm"
    broken.write_text('x = 1;\ny = 1 +;\nprint("never");\n')
    t0 = time.monotonic()
    with pytest.raises(ImageJError) as info:
        ij.run_macro(broken, file="some_image.tif")
    assert time.monotonic() - t0 < 30
    message = str(info.value)
    assert "broken.ijm" in message and "some_image.tif" in message and "line 2" in message
    assert "never" not in info.value.log  # stopped at the first error
    assert ij.run_macro(_write(macro_dir / "ok.ijm", 'return "still alive";')) == "still alive"


def test_corrupt_input_raises_naming_the_file(ij, tmp_path):
    from rescale4dl_bmz.imagej.bridge import ImageJError

    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x07" * 200)
    out = tmp_path / "out" / "corrupt.tif"
    with pytest.raises(ImageJError, match="corrupt.tif"):
        ij.semantic_file(corrupt, out)
    assert not out.exists()
    with pytest.raises(ImageJError, match="unknown style"):
        ij.run_macro("instance_to_semantic.ijm", {"input": corrupt, "output": out, "style": "sideways"})


def test_dialog_waiting_for_a_user_is_an_error_not_a_hang(ij, macro_dir):
    from rescale4dl_bmz.imagej.bridge import ImageJError

    asks = _write(macro_dir / "asks.ijm", 'x = getNumber("Pixel size?", 1);\nwaitForUser("Click OK");\n')
    t0 = time.monotonic()
    with pytest.raises(ImageJError, match="Pixel size"):
        ij.run_macro(asks, file="img.tif")
    assert time.monotonic() - t0 < 30


def test_hanging_macro_is_killed_at_the_timeout(ij, macro_dir):
    from rescale4dl_bmz.imagej.bridge import ImageJTimeout

    hang = _write(macro_dir / "hang.ijm", "while (true) { wait(50); }\n")
    pid = ij._proc.pid
    display = ij._display
    t0 = time.monotonic()
    with pytest.raises(ImageJTimeout, match="hang.ijm.*stuck.tif"):
        ij.run_macro(hang, file="stuck.tif", timeout=3)
    assert 3 <= time.monotonic() - t0 < 20
    assert not _group_members(pid)  # worker, JVM and Xvfb are gone (zombies at most)
    assert not Path(f"/tmp/.X{display}-lock").exists()
    np.testing.assert_array_equal(ij.instance_to_semantic(hand_cases()["touching"]),
                                  deepbacs_loop(hand_cases()["touching"]))  # a fresh worker took over


def test_resample_macro_bins_and_scales(ij, shared_data, tmp_path):
    src = shared_data / "saureus_crop" / "images" / "1.tif"
    assert read_pixel_size(src) == pytest.approx(0.0799, abs=1e-4)
    image = read_image(src).astype(np.float64)

    down = ij.resample_file(src, tmp_path / "down.tif", 0.1598)
    binned = read_image(down)
    assert binned.shape == (256, 256)
    assert read_pixel_size(down) == pytest.approx(0.1598, rel=1e-6)
    block_mean = image.reshape(256, 2, 256, 2).mean(axis=(1, 3))
    assert np.abs(binned - block_mean).max() < 1.0  # ImageJ's average bin (16-bit: truncated)

    up = ij.resample_file(src, tmp_path / "up.tif", 0.03995)
    upscaled = read_image(up)
    assert upscaled.shape == (1024, 1024)
    assert read_pixel_size(up) == pytest.approx(0.03995, rel=1e-6)
    assert abs(upscaled.mean() - image.mean()) < 0.01 * image.mean()

    odd = ij.resample_file(src, tmp_path / "odd.tif", 0.12)  # ratio 1.5: bicubic Size, not Bin
    assert read_image(odd).shape == (round(512 * 0.0799 / 0.12),) * 2
    assert read_pixel_size(odd) == pytest.approx(0.12, rel=1e-6)


def test_resample_macro_needs_a_calibration(ij, shared_data, tmp_path):
    from rescale4dl_bmz.imagej.bridge import ImageJError

    src = shared_data / "ecoli_colicoords" / "images"
    first = list_images(src)[0]
    with pytest.raises(ImageJError, match="no physical pixel size"):
        ij.resample_file(first, tmp_path / "x.tif", 0.16)
    out = ij.resample_file(first, tmp_path / "x.tif", 0.16, source_um=0.08)  # the ColiCoords default
    assert read_image(out).shape == (256, 256) and read_pixel_size(out) == pytest.approx(0.16, rel=1e-6)


@needs_imagej
def test_labels_cli_with_imagej_engine(shared_data, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    for f in list_images(shared_data / "ecoli_colicoords" / "masks")[:3]:
        shutil.copy(f, masks / f.name)
    write_tiff(masks / "calibrated.tif", read_mask(shared_data / "saureus_crop" / "masks" / "1.tif"), 0.0799)
    out_ij, out_py = tmp_path / "ij", tmp_path / "py"
    assert cli.main(["labels", str(masks), "--out", str(out_ij), "--engine", "imagej"]) == 0
    assert cli.main(["labels", str(masks), "--out", str(out_py)]) == 0
    names = sorted(p.name for p in out_py.iterdir())
    assert names == sorted(p.name for p in out_ij.iterdir()) and len(names) == 4
    for name in names:
        a, b = read_mask(out_ij / name), read_mask(out_py / name)
        assert a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    assert read_pixel_size(out_ij / "calibrated.tif") == pytest.approx(0.0799, rel=1e-6)
    # Bad input: exit code 2 with a message, nothing written.
    assert cli.main(["labels", str(masks), "--out", str(masks / "sub"), "--engine", "imagej"]) == 2
    (masks / "broken.tif").write_bytes(b"not a tiff")
    out_bad = tmp_path / "bad"
    assert cli.main(["labels", str(masks), "--out", str(out_bad), "--engine", "imagej"]) == 2
    assert "broken.tif" in capsys.readouterr().err
    assert not out_bad.exists()


def test_missing_pieces_are_named(monkeypatch, tmp_path):
    """No JVM needed: a wrong jar, Fiji folder or missing tool gives a message that says what to do."""
    from rescale4dl_bmz.imagej.bridge import ImageJ
    from rescale4dl_bmz.imagej.install import ImageJUnavailable, find_fiji, find_ij_jar, macro_path

    monkeypatch.setenv("RESCALE4DL_IJ_JAR", str(tmp_path / "nope.jar"))
    with pytest.raises(InputError, match="nope.jar"):
        find_ij_jar()
    monkeypatch.delenv("RESCALE4DL_IJ_JAR")
    with pytest.raises(InputError, match="not a Fiji installation"):
        find_fiji(tmp_path)
    monkeypatch.setenv("RESCALE4DL_FIJI", str(tmp_path / "Fiji.app"))
    with pytest.raises(InputError, match="Fiji.app"):
        ImageJ()
    monkeypatch.delenv("RESCALE4DL_FIJI")
    if Path("/usr/share/java/ij.jar").is_file():
        monkeypatch.setenv("PATH", str(tmp_path))  # no Xvfb, no xauth (java may stay via JAVA_HOME)
        monkeypatch.setenv("JAVA_HOME", str(tmp_path))
        with pytest.raises(ImageJUnavailable, match="default-jre-headless"):
            ImageJ()
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "java").touch()
        with pytest.raises(ImageJUnavailable, match="'xvfb'"):
            ImageJ()
    with pytest.raises(InputError, match="not found"):
        macro_path("no_such_macro.ijm")
    assert macro_path("instance_to_semantic.ijm").is_file()


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
