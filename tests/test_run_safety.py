"""Run folders and inputs that cannot be corrupted, without training: the run record, the lock,
leftover cleanup, every check before the first byte, mask plausibility, environment faults and
exit codes (issue 12). The sweeps themselves (signals, kill -9, concurrent runs) are in
test_sweep_interrupts.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.sweep.config import make_sweep_config
from rescale4dl_bmz.files.demo_data import write_demo_dataset
from rescale4dl_bmz.errors import InputError

TINY = {"architecture": {"kind": "unet", "depth": 2, "base_filters": 4}, "steps": 6, "steps_per_epoch": 3,
        "learning_rate": 1e-3, "batch_size": 2}


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes (to prove a folder was left byte-identical)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("data"))


def config(demo, out, **extra):
    images, masks = demo
    fields = dict(images=images, masks=masks, out=out, task="semantic", factors=["og", "ds2"], test_images=["q4"],
                  training=TINY)
    return make_sweep_config(**{**fields, **extra})


# ----------------------------------------------------------------------------- the run record (item 1)

def test_record_is_written_first_and_a_different_sweep_is_refused(demo, tmp_path):
    from rescale4dl_bmz.files.run_folder import RECORD_FILE, read_record
    from rescale4dl_bmz.sweep.prepare import prepare

    out = tmp_path / "run"
    prepare(config(demo, out))
    record = read_record(out)
    assert record.config["factors"] == ["og", "ds2"] and record.code_version
    assert set(record.inputs) == {f"{k}:q{i}" for k in ("image", "mask") for i in range(1, 5)}
    assert record.inputs["image:q1"].size == (demo[0] / "q1.tif").stat().st_size
    before = snapshot(out)
    prepare(config(demo, out))  # the same sweep again: accepted
    other = config(demo, out, test_images=["q3"], training={**TINY, "steps": 8})
    with pytest.raises(InputError, match="differing: test_images; training") as err:
        prepare(other)
    assert str(out / RECORD_FILE) in str(err.value)
    assert snapshot(out) == before  # nothing rewritten
    # a changed input file is a different run too
    image = tifffile.imread(demo[0] / "q2.tif")
    tifffile.imwrite(demo[0] / "q2.tif", image)
    os.utime(demo[0] / "q2.tif", ns=(1, 1))
    with pytest.raises(InputError, match=r"inputs \(image:q2\)"):
        prepare(config(demo, out))
    # finish-only keys (tau, criterion) may change
    prepare(config(demo, out, tau_s=2.0, criterion="max-iou"), on_change="restart")
    prepare(config(demo, out, tau_s=3.0))


def test_restart_and_extend(demo, tmp_path):
    from rescale4dl_bmz.files.run_folder import read_record
    from rescale4dl_bmz.sweep.prepare import prepare

    out = tmp_path / "run"
    prepare(config(demo, out))
    (out / "og").mkdir()
    (out / "og" / "stale.txt").write_text("old")
    with pytest.raises(InputError, match="--extend to add factors"):
        prepare(config(demo, out, factors=["og", "ds2", "up2"]))
    prepare(config(demo, out, factors=["up2", "og", "ds2"]), on_change="extend")  # same crop: sound
    assert read_record(out).config["factors"] == ["up2", "og", "ds2"]
    assert (out / "og" / "stale.txt").exists()  # extending keeps what was there
    with pytest.raises(InputError, match="coarsest factor changes the crop"):
        prepare(config(demo, out, factors=["up2", "og", "ds2", "ds4"]), on_change="extend")
    with pytest.raises(InputError, match="would be dropped"):
        prepare(config(demo, out, factors=["og", "ds2"]), on_change="extend")
    with pytest.raises(InputError, match="differ too: seed"):
        prepare(config(demo, out, factors=["up2", "og", "ds2"], seed=3), on_change="extend")
    prepare(config(demo, out, seed=3), on_change="restart")
    assert not (out / "og").exists() and read_record(out).config["seed"] == 3


def test_a_folder_that_is_not_a_run_folder_is_never_written_to(demo, tmp_path):
    from rescale4dl_bmz.sweep.prepare import prepare

    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    for on_change in ("refuse", "restart", "extend"):
        with pytest.raises(InputError, match="no run record"):
            prepare(config(demo, out), on_change=on_change)
    assert snapshot(out) == {"thesis.docx": b"precious"}
    assert _sweep_cli(demo[0].parent, out, "--restart") == 2  # the command: no lock file written either
    assert sorted(p.name for p in out.iterdir()) == ["thesis.docx"]
    bad = tmp_path / "bad"
    prepare(config(demo, bad))
    (bad / "record.json").write_text("{broken")
    with pytest.raises(InputError, match="record.json"):
        prepare(config(demo, bad))
    prepare(config(demo, bad), on_change="restart")


def _finished_folder(demo, out: Path) -> Path:
    """A run folder with a record and tables the record vouches for (tables written by hand)."""
    from rescale4dl_bmz.files.run_folder import vouch_tables
    from rescale4dl_bmz.sweep.prepare import prepare

    prepare(config(demo, out))
    rows = [{"factor": f, "grid": "native", "iou_mean": v, "status": "done", "scale": s}
            for f, v, s in (("og", 0.8, 1), ("ds2", 0.79, 2))]
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    vouch_tables(out)
    return out


def test_select_refuses_tables_that_do_not_match_the_record(demo, tmp_path):
    from rescale4dl_bmz.files.run_folder import load_run
    from rescale4dl_bmz.sweep.prepare import prepare

    out = _finished_folder(demo, tmp_path / "run")
    assert load_run(out).factors == ("og", "ds2")
    summary = (out / "summary.csv").read_text()
    (out / "summary.csv").write_text(summary.replace("0.79", "0.99"))
    with pytest.raises(InputError, match="does not match the run record"):
        load_run(out)
    assert main(["select", str(out)]) == 2
    (out / "summary.csv").write_text(summary)
    assert load_run(out)
    prepare(config(demo, out, tau_s=5.0))  # a new sweep starts: the old tables are no longer vouched for
    with pytest.raises(InputError, match="did not finish"):
        load_run(out)
    assert main(["plan", str(out), "--camera", "64x64", "--tau", "1"]) == 2


# ----------------------------------------------------------------------------- the lock (item 2)

def test_one_writer_per_run_folder(tmp_path):
    from rescale4dl_bmz.files.run_lock import HOLDER_FILE, RunLock, is_locked

    out = tmp_path / "run"
    with RunLock(out):
        assert is_locked(out)
        holder = json.loads((out / HOLDER_FILE).read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(InputError, match=f"in use by another sweep \\(pid {os.getpid()}"):
            RunLock(out).__enter__()
        probe = subprocess.run([sys.executable, "-c", "import sys; from rescale4dl_bmz.files.run_lock import RunLock\n"
                                f"try:\n    RunLock({str(out)!r}).__enter__()\nexcept Exception as e:\n"
                                "    print(e); sys.exit(2)"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert probe.returncode == 2 and f"pid {os.getpid()}" in probe.stdout
        assert os.environ["TMPDIR"] == str((out / ".tmp").resolve())
    assert not is_locked(out) and not (out / HOLDER_FILE).exists() and not (out / ".tmp").exists()


def test_a_stale_lock_is_taken_over_and_its_leftovers_cleaned(tmp_path):
    """What `kill -9` leaves: the holder file, half-written files, a temp folder, an orphaned child."""
    from rescale4dl_bmz.files.run_lock import HOLDER_FILE, RunLock

    out = tmp_path / "run"
    (out / "og" / ".model.abcd.part").mkdir(parents=True)
    (out / "og" / ".model.abcd.part" / "model.keras").write_bytes(b"half")
    (out / "og" / ".summary.csv.x1.part").write_text("half")
    (out / ".tmp" / "rescale4dl_train_x").mkdir(parents=True)
    (out / "og" / "images").mkdir()
    (out / "og" / "images" / "q1.tif").write_bytes(b"kept")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    import psutil

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": "here", "started": "then", "command": "rescale4dl sweep",
              "children": [{"pid": orphan.pid, "create_time": psutil.Process(orphan.pid).create_time(),
                            "name": "python"}]}
    (out / HOLDER_FILE).write_text(json.dumps(holder))
    t0 = time.time()
    with RunLock(out) as lock:
        assert lock.taken_over["pid"] == dead.pid
        assert orphan.wait(timeout=10) is not None  # the orphan was ended
        assert not (out / "og" / ".model.abcd.part").exists()
        assert not (out / "og" / ".summary.csv.x1.part").exists()
        assert not (out / ".tmp" / "rescale4dl_train_x").exists()
        assert (out / "og" / "images" / "q1.tif").read_bytes() == b"kept"
    assert time.time() - t0 < 15


# ----------------------------------------------------------------------------- checks before the first byte (item 3)

def _write_pair(folder: Path, name: str, image: np.ndarray, mask: np.ndarray, suffix: str = ".tif") -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "images" / f"{name}{suffix}", image)
    tifffile.imwrite(folder / "masks" / f"{name}.tif", mask)


def _blobs(seed: int, side: int = 128) -> tuple[np.ndarray, np.ndarray]:
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    mask = np.zeros((side, side), np.uint16)
    for k in range(1, 9):
        rr, cc = disk(tuple(rng.integers(12, side - 12, 2)), 7, shape=mask.shape)
        mask[rr, cc] = k
    return (mask > 0).astype(np.float32) + rng.normal(0, 0.1, mask.shape).astype(np.float32), mask


def _sweep_cli(data: Path, out: Path, *extra: str) -> int:
    return main(["sweep", "--images", str(data / "images"), "--masks", str(data / "masks"), "--task", "semantic",
                 "--out", str(out), "--factors", "og", "ds2", "--steps", "6", "--base-filters", "4", *extra])


def test_nan_pixels_are_refused_naming_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(3):
        _write_pair(data, f"im{i}", *_blobs(i))
    image, mask = _blobs(9)
    image[5, 5] = np.nan
    _write_pair(data, "bad", image, mask)
    before = snapshot(data)
    assert _sweep_cli(data, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "bad.tif" in err and "NaN or infinite" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and snapshot(data) == before


def test_too_small_for_a_validation_split_is_refused_before_writing(tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(2):
        image, mask = _blobs(i, side=64)
        _write_pair(data, f"im{i}", image, mask)
    assert _sweep_cli(data, tmp_path / "out", "--test-images", "im1") == 2
    assert "validation" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", [["--pixel-size", "inf"], ["--pixel-size", "nan"], ["--pixel-size", "-1"],
                                  ["--tau", "inf"], ["--tolerance", "nan"]])
def test_non_finite_numbers_are_refused(demo, tmp_path, flag, capsys):
    assert _sweep_cli(demo[0].parent, tmp_path / "out", *flag) == 2
    assert flag[0].lstrip("-").split("-")[0] in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_yaml_types_are_checked(demo, tmp_path, capsys):
    cfg = tmp_path / "sweep.yaml"
    for text in ("factors: 3", "factors: {og: 1}", "images: 5", "tau_s: .inf", "pixel_size_um: .nan",
                 "training: 5", "test_images: 7", "seed: true"):
        cfg.write_text(f"images: {demo[0]}\nmasks: {demo[1]}\nout: {tmp_path / 'out'}\ntask: semantic\n{text}\n")
        assert main(["sweep", str(cfg)]) == 2, text
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(cfg) in err, text
    assert not (tmp_path / "out").exists()


def test_inputs_and_output_may_not_nest(demo, tmp_path, capsys):
    images, masks = demo
    before = snapshot(images.parent)
    assert _sweep_cli(images.parent, images / "out") == 2          # output inside an input
    assert _sweep_cli(images.parent, images.parent) == 2           # inputs inside the output
    assert "inside the output folder" in capsys.readouterr().err
    assert main(["rescale", str(images), str(masks), "--out", str(images.parent)]) == 2
    assert main(["labels", str(masks), "--out", str(masks.parent)]) == 2
    (tmp_path / "afile").write_text("x")
    assert _sweep_cli(images.parent, tmp_path / "afile") == 2
    assert _sweep_cli(images.parent, tmp_path / "afile" / "sub") == 2
    assert "is a file" in capsys.readouterr().err
    assert snapshot(images.parent) == before


def test_predict_checks_every_image_before_writing(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "x.tif", np.zeros((32, 32), np.uint8))
    from imageio.v3 import imwrite

    imwrite(images / "x.png", np.zeros((32, 32), np.uint8))
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "no_model"), str(images), "--out", str(out)]) == 2
    assert "x.png" in capsys.readouterr().err and not out.exists()
    (images / "x.png").unlink()
    (images / "y.tif").write_bytes(b"not a tiff")  # a later image is unreadable
    assert main(["predict", str(tmp_path / "no_model"), str(images), "--out", str(out)]) == 2
    assert "y.tif" in capsys.readouterr().err and not out.exists()


def test_labels_and_rescale_check_every_mask_before_writing(demo, tmp_path, capsys):
    images, masks = demo
    bad = tmp_path / "masks"
    bad.mkdir()
    for f in masks.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    tifffile.imwrite(bad / "q1.png.tif", np.zeros((8, 8), np.uint8))
    (bad / "q9.tif").write_bytes(b"broken")
    out = tmp_path / "labels"
    assert main(["labels", str(bad), "--out", str(out)]) == 2
    assert "q9.tif" in capsys.readouterr().err and not out.exists()
    (bad / "q9.tif").unlink()
    (bad / "q1.png.tif").unlink()
    tifffile.imwrite(bad / "q1.tif", tifffile.imread(images / "q1.tif"))  # an intensity image as a mask
    assert main(["rescale", str(images), str(bad), "--out", str(tmp_path / "ladder")]) == 2
    assert "q1.tif" in capsys.readouterr().err and not (tmp_path / "ladder").exists()


# ----------------------------------------------------------------------------- mask plausibility (item 4)

def test_intensity_images_are_refused_as_masks_in_under_a_second(shared_data, tmp_path, capsys):
    from rescale4dl_bmz.files.images import read_image, read_instance_mask

    for name in ("saureus_crop", "ecoli_colicoords", "celegans_bbbc010"):
        for mask in sorted((shared_data / name / "masks").glob("*.tif"))[:4]:
            read_instance_mask(mask)  # real masks pass
        image = sorted((shared_data / name / "images").glob("*.tif"))[0]
        for variant, array in (("raw", read_image(image)), ("8bit", read_image(image) // 256)):
            folder = tmp_path / name / variant
            folder.mkdir(parents=True)
            tifffile.imwrite(folder / "m.tif", array)
            t0 = time.perf_counter()
            with pytest.raises(InputError, match="m.tif.*(intensity|pieces)"):
                read_instance_mask(folder / "m.tif")
            assert time.perf_counter() - t0 < 1.0
            t0 = time.perf_counter()
            assert main(["advise", str(folder)]) == 2
            assert time.perf_counter() - t0 < 5.0
            assert "intensity" in capsys.readouterr().err
    binary = tmp_path / "binary"
    binary.mkdir()
    tifffile.imwrite(binary / "b.tif", (tifffile.imread(shared_data / "saureus_crop" / "masks" / "1.tif") > 0)
                     .astype(np.uint8))
    assert main(["advise", str(binary)]) == 2
    assert "binary mask" in capsys.readouterr().err


def test_morphology_memory_is_bounded_whatever_the_mask(shared_data):
    """Objects are measured in batches whose packed canvas stays within a few images."""
    from rescale4dl_bmz.files.images import read_mask
    from rescale4dl_bmz.metrics import morphology
    from rescale4dl_bmz.metrics.instance import index_labels

    mask = read_mask(shared_data / "saureus_crop" / "masks" / "1.tif")
    whole = morphology.object_morphology(mask)
    li = index_labels(mask)
    runs = morphology._batches(li.boxes, mask.size, budget=0, floor=0)  # force one object per batch
    assert len(runs) > 10
    saved = morphology._batches
    try:
        morphology._batches = lambda boxes, px: saved(boxes, px, 0, 0)
        parts = morphology.object_morphology(mask)
    finally:
        morphology._batches = saved
    for key in whole:
        np.testing.assert_allclose(parts[key], whole[key])
    # scattered labels (every label's box spans the image): no batch exceeds the budget
    rng = np.random.default_rng(0)
    scattered = rng.integers(0, 2000, (256, 256)).astype(np.uint16)
    li = index_labels(scattered)
    for a, b in morphology._batches(li.boxes, scattered.size):
        area = sum((bx[0].stop - bx[0].start + 2) * (bx[1].stop - bx[1].start + 2) for bx in li.boxes[a:b])
        assert area <= max(4 * scattered.size, 1 << 16) or b - a == 1


# ----------------------------------------------------------------------------- environment faults (item 5)

def test_environment_faults_end_with_one_line_and_their_own_exit_code(demo, tmp_path, capsys):
    out = _finished_folder(demo, tmp_path / "run")
    assert main(["select", str(out), "--json", str(tmp_path)]) == 2  # --json that is a folder
    assert "is a folder" in capsys.readouterr().err
    assert main(["select", str(out), "--json", "/sys/selection.json"]) == 4  # no permission
    err = capsys.readouterr().err
    assert err.strip() == "rescale4dl select: error: /sys/selection.json: Permission denied"
    assert main(["--debug", "select", str(out), "--json", "/sys/selection.json"]) == 4
    assert "Traceback" in capsys.readouterr().err
    assert not list(Path("/sys").glob(".selection.json*"))


def test_os_errors_name_the_path_and_the_cause():
    import errno

    from rescale4dl_bmz.cli.main import describe_os_error
    from rescale4dl_bmz.sweep.flow import is_environment_fault

    full = OSError(errno.ENOSPC, "No space left on device", "/data/run/og/model.keras")
    assert describe_os_error(full) == "/data/run/og/model.keras: No space left on device"
    assert is_environment_fault(full) and is_environment_fault(OSError(errno.EROFS, "Read-only file system"))
    assert not is_environment_fault(ValueError("x"))


def test_a_truncated_model_file_is_named(tmp_path, capsys):
    from rescale4dl_bmz.models.config import TrainConfig

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(TrainConfig(task="semantic", factor="og").model_dump_json())
    (model / "model.keras").write_bytes(b"PK\x03\x04truncated")
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", np.zeros((32, 32), np.uint8))
    assert main(["predict", str(model), str(images), "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert str(model / "model.keras") in err and "damaged, truncated" in err and "Traceback" not in err
    assert not (tmp_path / "pred").exists()
