"""Real sweeps (the `rescale4dl sweep` command in a subprocess, tiny budgets) that are stopped and
rerun (issue 12): two sweeps into one folder, SIGTERM to the process group, `kill -9` at several
stages, and done-markers checked against the files they vouch for. Every rerun must give the
tables of the uninterrupted sweep, and leave no process, `.part` file or temporary folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from rescale4dl_bmz.files.demo_data import write_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
KEYS = ["grid", "factor", "image"]
COMPARED = ["iou", "iou_inner", "iou_edge", "iou_binary", "n_true", "n_pred", "tp"]


def sweep_args(data: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    images, masks = data
    return [sys.executable, "-m", "rescale4dl_bmz", "sweep", "--images", str(images), "--masks", str(masks),
            "--task", "semantic", "--factors", "og", "ds2", "--test-images", "q4", "--steps", "6",
            "--base-filters", "4", "--no-export", "--out", str(out), *extra]


def start(data, out: Path) -> subprocess.Popen:
    return subprocess.Popen(sweep_args(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)


def run(data, out: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_args(data, out), capture_output=True, text=True, env=ENV, timeout=timeout)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 600, what: str = "") -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def training(out: Path, factor: str):
    return lambda: any((out / factor).glob(".model.*.part"))


def holder_children(out: Path) -> list[dict]:
    try:
        return json.loads((out / ".rescale4dl.holder.json").read_text()).get("children", [])
    except (OSError, ValueError):
        return []


def alive(children: list[dict]) -> list[int]:
    pids = []
    for c in children:
        try:
            if abs(psutil.Process(c["pid"]).create_time() - c["create_time"]) < 0.01:
                pids.append(c["pid"])
        except psutil.Error:
            pass
    return pids


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.name.endswith((".part", ".old"))] + list(out.glob(".tmp"))


def per_image(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "per_image.csv").sort_values(KEYS).reset_index(drop=True)[KEYS + COMPARED]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """One uninterrupted sweep; while it runs, a second sweep into the same folder is started."""
    out = tmp_path_factory.mktemp("finished") / "run"
    first = start(data, out)
    wait_for(lambda: (out / ".rescale4dl.holder.json").exists(), first, what="the lock to be taken")
    second = run(data, out, timeout=300)
    first_rc = first.wait(timeout=900)
    assert first_rc == 0, first.stderr.read()[-3000:]
    return out, first.pid, second


def test_two_sweeps_into_one_folder_the_second_is_refused(finished):
    out, first_pid, second = finished
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"in use by another sweep (pid {first_pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert (out / "summary.csv").is_file() and not leftovers(out)
    assert not (out / ".rescale4dl.holder.json").exists()  # released at the end


def test_a_sweep_with_another_config_is_refused_and_changes_nothing(finished, data):
    out, _, _ = finished
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and ".prefect" not in p.parts}
    other = subprocess.run([*sweep_args(data, out), "--steps", "7"], capture_output=True, text=True, env=ENV,
                           timeout=300)
    assert other.returncode == 2 and "differing: training" in other.stderr
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and ".prefect" not in p.parts}
    assert after == before
    assert subprocess.run([sys.executable, "-m", "rescale4dl_bmz", "select", str(out)], env=ENV,
                          capture_output=True).returncode == 0


def test_sigterm_stops_the_whole_sweep_within_seconds_and_a_rerun_resumes(finished, data, tmp_path):
    out = tmp_path / "run"
    proc = start(data, out)
    wait_for(training(out, "og"), proc, what="training of og")
    wait_for(lambda: len(alive(holder_children(out))) >= 2, proc, timeout=60, what="the children to be recorded")
    children = holder_children(out)
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGTERM)
    rc = proc.wait(timeout=60)
    assert rc == 143, proc.stderr.read()[-2000:]
    assert time.time() - t0 < 15
    assert "interrupted by SIGTERM" in proc.stderr.read()
    time.sleep(0.5)
    assert alive(children) == []  # training child, Prefect server: all gone
    assert not leftovers(out) and not (out / ".rescale4dl.holder.json").exists()
    assert not (out / "og" / "train.done.json").exists()  # the interrupted stage is unfinished
    again = run(data, out)
    assert again.returncode == 0, again.stderr[-3000:]
    pd.testing.assert_frame_equal(per_image(out), per_image(finished[0]))


def _kill9_and_rerun(data, out: Path, reached, what: str, baseline: Path) -> None:
    proc = start(data, out)
    wait_for(reached, proc, what=what)
    children = holder_children(out)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only: its children are orphaned
    proc.wait(timeout=30)
    again = run(data, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert alive(children) == [], "an orphan of the killed sweep still runs"
    assert not leftovers(out)
    pd.testing.assert_frame_equal(per_image(out), per_image(baseline))


def test_kill9_while_training_then_rerun_cleans_up_and_resumes(finished, data, tmp_path):
    out = tmp_path / "run"

    def og_training_with_server():
        return training(out, "og")() and any("uvicorn" in c["name"] or c["name"].startswith("python")
                                             for c in holder_children(out))

    _kill9_and_rerun(data, out, og_training_with_server, "training of og", finished[0])


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["record", "second-training", "evaluate"])
def test_kill9_at_other_stages_then_rerun(finished, data, tmp_path, stage):
    out = tmp_path / "run"
    reached = {"record": lambda: (out / "record.json").exists(),
               "second-training": training(out, "ds2"),
               "evaluate": lambda: (out / "og" / "predict.done.json").exists()}[stage]
    _kill9_and_rerun(data, out, reached, stage, finished[0])


def test_done_markers_are_checked_against_their_files(finished, data, tmp_path):
    """A deleted prediction and a truncated model are redone on rerun, nothing else is."""
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    og_model = (out / "og" / "model" / "model.keras").stat().st_mtime_ns
    (out / "og" / "predictions" / "q4.tif").unlink()
    keras_file = out / "ds2" / "model" / "model.keras"
    keras_file.write_bytes(keras_file.read_bytes()[:100])
    again = run(data, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "og" / "model" / "model.keras").stat().st_mtime_ns == og_model  # og not retrained
    assert (out / "og" / "predictions" / "q4.tif").is_file()
    assert keras_file.stat().st_size > 1000  # ds2 retrained
    assert "redoing it" in again.stderr
    pd.testing.assert_frame_equal(per_image(out), per_image(finished[0]))
