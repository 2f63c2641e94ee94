"""The sweep flow end to end: real training, real Prefect (ephemeral API), real export.

One tiny sequential sweep is the baseline; the Dask run and the interrupted-and-resumed run must
reproduce its tables.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rescale4dl_bmz.sweep.config import make_sweep_config
from rescale4dl_bmz.files.demo_data import write_demo_dataset

TINY_TRAINING = {"architecture": {"kind": "unet", "depth": 2, "base_filters": 4}, "steps": 6,
                 "steps_per_epoch": 3, "learning_rate": 1e-3, "batch_size": 2}
FACTORS = ["og", "ds2"]
TABLE_KEYS = ["grid", "factor", "image"]
COMPARED = ["iou", "iou_inner", "iou_edge", "iou_binary", "n_true", "n_pred", "tp"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("demo_data"))


def tiny_config(demo_data, out: Path, **extra):
    images, masks = demo_data
    return make_sweep_config(images=images, masks=masks, out=out, task="semantic", factors=FACTORS,
                             test_images=["q4"], training=TINY_TRAINING, **extra)


@pytest.fixture(scope="module")
def sequential_run(demo_data, tmp_path_factory):
    from rescale4dl_bmz.sweep.flow import run_sweep

    out = tmp_path_factory.mktemp("sweep") / "run"
    config = tiny_config(demo_data, out)
    result = run_sweep(config)
    return config, result


def _per_image(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "per_image.csv").sort_values(TABLE_KEYS).reset_index(drop=True)


def test_sweep_writes_every_output(sequential_run, demo_data):
    config, result = sequential_run
    out = Path(config.out)
    assert result["n_done"] == 2 and not result["failed"]
    for name in ("config.yaml", "run.json", "advice.csv", "per_image.csv", "per_object.csv", "summary.csv",
                 "selection.json", "report.md", "report.html", "model.zip",
                 "figures/iou_vs_coverage.png", "figures/diameters.png", "figures/examples.png"):
        assert (out / name).is_file(), name
    for factor in FACTORS:
        for sub in ("images", "masks", "labels", "predictions"):
            assert (out / factor / sub / "q4.tif").is_file()
        assert (out / factor / "model" / "model.keras").is_file()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["grid"]) == {"sampled", "native"}
    assert set(summary["factor"]) == set(FACTORS)
    assert (summary["status"] == "done").all()
    for col in ("wall_time_s", "steps", "pixels_seen", "iou_mean", "throughput", "pct_diameter_per_pixel"):
        assert summary[col].notna().all(), col
    # throughput: a 2x coarser pixel fits ~4x more (pixel-)objects... in the same camera field
    native = summary[summary["grid"] == "native"].set_index("factor")
    assert native.loc["ds2", "throughput"] == pytest.approx(4 * native.loc["og", "throughput"], rel=0.25)
    selection = json.loads((out / "selection.json").read_text())
    assert selection["factor"] in FACTORS
    assert selection["factor"] in result["headline"]
    report = (out / "report.md").read_text()
    assert "Acquire your images" in report and "iou_vs_coverage.png" in report and "Glossary" in report
    # one test image (q4): the report says, before anything else, that no interval backs the ranking
    assert report.index("Only one test image was evaluated") < report.index("Why this pixel size")
    page = (out / "report.html").read_text()  # self-contained: every figure embedded, nothing linked
    assert page.count("src=\"data:image/png;base64,") == 4 and "src=\"figures/" not in page
    # inputs untouched: the demo folders still hold exactly the four quadrants
    assert sorted(p.name for p in demo_data[0].iterdir()) == ["q1.tif", "q2.tif", "q3.tif", "q4.tif"]


def test_rerun_resumes_without_redoing_work(sequential_run):
    from rescale4dl_bmz.sweep.flow import run_sweep

    config, _ = sequential_run
    out = Path(config.out)
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/model/model.keras")}
    table = _per_image(out)
    t0 = time.perf_counter()
    result = run_sweep(config)
    assert result["n_done"] == 2
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/model/model.keras")} == before
    pd.testing.assert_frame_equal(_per_image(out), table)
    assert time.perf_counter() - t0 < 600


def test_killed_sweep_resumes_and_gives_the_same_tables(sequential_run, demo_data, tmp_path):
    """`kill -9` in the middle of a training, then a rerun: same final tables as uninterrupted."""
    config, _ = sequential_run
    out = tmp_path / "run"
    cfg_file = tmp_path / "sweep.yaml"
    tiny = tiny_config(demo_data, out)
    cfg_file.write_text(tiny.to_yaml())
    proc = subprocess.Popen([sys.executable, "-m", "rescale4dl_bmz", "sweep", str(cfg_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        # wait until the second factor's training has started (the first factor is finished)
        while time.time() < deadline and not list((out / "ds2").glob(".model*")):
            if proc.poll() is not None:
                pytest.fail("the sweep ended before it could be interrupted")
            time.sleep(0.2)
        assert time.time() < deadline, "training of ds2 never started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (out / "og" / "train.done.json").exists()
    assert not (out / "ds2" / "evaluate.done.json").exists()
    og_model = (out / "og" / "model" / "model.keras").stat().st_mtime_ns
    done = subprocess.run([sys.executable, "-m", "rescale4dl_bmz", "sweep", str(cfg_file)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "og" / "model" / "model.keras").stat().st_mtime_ns == og_model  # not retrained
    base = _per_image(Path(config.out))
    again = _per_image(out)
    pd.testing.assert_frame_equal(again[TABLE_KEYS + COMPARED], base[TABLE_KEYS + COMPARED])


def test_dask_runs_factors_in_parallel_with_the_same_tables(sequential_run, demo_data, tmp_path):
    from rescale4dl_bmz.sweep.flow import run_sweep

    config, _ = sequential_run
    dask_config = tiny_config(demo_data, tmp_path / "run", task_runner="dask", dask_workers=2, export=False)
    result = run_sweep(dask_config)
    assert result["n_done"] == 2
    base, again = _per_image(Path(config.out)), _per_image(tmp_path / "run")
    pd.testing.assert_frame_equal(again[TABLE_KEYS + COMPARED], base[TABLE_KEYS + COMPARED])
