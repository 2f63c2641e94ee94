"""A sweep that loses a factor says so: exit 3, a Failed Prefect flow run, failures first in the
report and the terminal, and no gain claimed against the factor that failed.

The failure is real, not simulated: a sweep over ds2 ds4 is extended with og, and the folder
where og's model must go is taken by a file, so og's training process fails the way a full or
read-only disk would fail it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rescale4dl_bmz.sweep.config import make_sweep_config
from rescale4dl_bmz.files.demo_data import write_demo_dataset

TINY_TRAINING = {"architecture": {"kind": "unet", "depth": 2, "base_filters": 4}, "steps": 4,
                 "steps_per_epoch": 2, "learning_rate": 1e-3, "batch_size": 2}


@pytest.fixture(scope="module")
def lost_baseline(tmp_path_factory):
    """A CLI sweep over og ds2 ds4 whose og cannot be trained."""
    from rescale4dl_bmz.sweep.flow import run_sweep

    root = tmp_path_factory.mktemp("lost_og")
    images, masks = write_demo_dataset(root / "data")
    out = root / "run"
    common = dict(images=images, masks=masks, out=out, task="semantic", test_images=["q4"], training=TINY_TRAINING,
                  export=False)
    assert not run_sweep(make_sweep_config(factors=["ds2", "ds4"], **common))["failed"]
    config = make_sweep_config(factors=["og", "ds2", "ds4"], **common)
    (root / "sweep.yaml").write_text(config.to_yaml())
    (out / "og").mkdir()
    (out / "og" / "model").write_text("not a model folder")  # og's training cannot write its model
    done = subprocess.run([sys.executable, "-m", "rescale4dl_bmz", "sweep", str(root / "sweep.yaml"), "--extend"],
                          capture_output=True, text=True, timeout=900)
    return out, done


def test_exit_code_three_and_failures_first_in_the_terminal(lost_baseline):
    out, done = lost_baseline
    assert done.returncode == 3, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("─")]
    start = next(i for i, line in enumerate(lines) if "FAILED" in line)
    assert lines[start].startswith("1 of 3 factor(s) FAILED")
    assert lines[start + 1].startswith("FAILED  og failed during training:") and "Full log:" in lines[start + 1]
    assert "Traceback" not in done.stdout
    # the recommendation's first sentence says the baseline failed
    assert lines[start + 2].startswith("The original sampling (og) failed during training")


def test_no_gain_is_claimed_against_the_failed_baseline(lost_baseline):
    out, _ = lost_baseline
    selection = json.loads((out / "selection.json").read_text())
    assert selection["baseline"] == "ds2" and selection["failed"] == {"og": "train"}
    assert selection["caveat"].startswith("The original sampling (og) failed during training")
    assert selection["factor"] in ("ds2", "ds4") and "og" not in [r["factor"] for r in selection["table"]]
    summary = pd.read_csv(out / "summary.csv")
    og = summary[summary["factor"] == "og"].iloc[0]
    assert og["status"] == "failed" and og["failed_stage"] == "train"
    assert Path(og["log"]).is_file() and "Error" in og["error"] and "\n" not in og["error"]
    report = (out / "report.md").read_text()
    assert report.index("Failed factors") < report.index("Why this pixel size")
    assert "than at og" not in report and "than at ds2" in report


def test_select_on_the_run_folder_states_the_baseline(lost_baseline, capsys):
    from rescale4dl_bmz.cli.main import main

    out, _ = lost_baseline
    assert main(["select", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("NOTE: The original sampling (og) failed") and "Gains against ds2:" in text
    assert "Gains against og" not in text


def test_the_flow_run_ends_failed_naming_the_factor(lost_baseline):
    """The same run folder rerun in-process: finished factors resume, og fails again, and the
    Prefect flow run's final state is Failed with a one-line message naming og."""
    from rescale4dl_bmz.sweep.config import load_sweep_config
    from rescale4dl_bmz.process.settings import configure_prefect
    from rescale4dl_bmz.sweep.flow import make_flow
    from rescale4dl_bmz.sweep.prepare import prepare

    out, _ = lost_baseline
    config = load_sweep_config(out.parent / "sweep.yaml")
    plan = prepare(config)
    configure_prefect(config.out)
    state = make_flow(config)(config, plan, return_state=True)
    assert state.is_failed()
    assert state.message.startswith("1 of 3 factor(s) failed: og in train:") and "\n" not in state.message
    summary = state.result(raise_on_failure=False)
    assert summary["n_done"] == 2 and set(summary["failed"]) == {"og"}
