"""A `schedule: halving` sweep end to end (real training, real Prefect): the factor clearly behind
on validation after the first round is stopped, the survivor gets the full budget, the summary,
report and halving.json say so, and a rerun trains nothing again.

Which factor trails after 4 tiny steps is the data's business (here og: 2 training patches of
256 px learn slower than ds8's 32 px ones); the run is seeded, so it is the same every time. That a
factor with nothing to learn is the one stopped is tested in test_halving_rounds.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rescale4dl_bmz.files.demo_data import write_demo_dataset
from rescale4dl_bmz.sweep.config import make_sweep_config


TRAINING = {"architecture": {"kind": "unet", "depth": 2, "base_filters": 8}, "steps": 8, "steps_per_epoch": 2,
            "learning_rate": 1e-2, "batch_size": 2}


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory):
    from rescale4dl_bmz.sweep.flow import run_sweep

    images, masks = write_demo_dataset(tmp_path_factory.mktemp("demo"))
    config = make_sweep_config(images=images, masks=masks, out=tmp_path_factory.mktemp("sweep") / "run",
                               task="semantic", factors=["og", "ds8"], test_images=["q4"], training=TRAINING,
                               schedule="halving", halving_rounds=2, halving_margin=0.05, export=False)
    return config, run_sweep(config)


def test_the_factor_behind_stops_and_the_survivor_gets_the_full_budget(halving_run):
    config, result = halving_run
    out = Path(config.out)
    decision = json.loads((out / "halving.json").read_text())
    behind, ahead = sorted(decision["factors"], key=lambda f: decision["factors"][f]["scores"][0])
    lost, won = decision["factors"][behind], decision["factors"][ahead]
    assert won["scores"][0] - lost["scores"][0] > 0.05, decision
    assert lost["status"] == "stopped" and lost["stopped_after_round"] == 1 and lost["steps"] == 4
    assert won["status"] == "done" and won["steps"] == won["budget_steps"] == 8 and len(won["scores"]) == 2
    assert "more than 0.05" in decision["rule"]
    assert not (out / behind / "model").exists() and not (out / behind / "predictions").exists()
    assert json.loads((out / ahead / "model" / "cost.json").read_text())["steps"] == 8
    assert result["chosen"] == ahead and not result["failed"]


def test_summary_and_report_state_the_decision(halving_run):
    config, _ = halving_run
    out = Path(config.out)
    summary = pd.read_csv(out / "summary.csv")
    rows = summary.drop_duplicates("factor").set_index("factor")
    stopped = rows[rows["status"] == "stopped"]
    assert len(stopped) == 1 and (stopped["stopped_after_round"] == 1).all() and (stopped["steps"] == 4).all()
    assert (rows.loc[rows["status"] == "done", "steps"] == 8).all()
    assert (rows["budget_steps"] == 8).all()
    assert [len(str(v).split()) for v in rows.loc[rows["status"] == "done", "halving_scores"]] == [2]
    assert [len(str(v).split()) for v in stopped["halving_scores"]] == [1]
    report = (out / "report.md").read_text()
    assert "Successive halving" in report and "more than 0.05" in report and "stopped after round 1" in report
    assert "Successive halving" in (out / "report.html").read_text()


def test_rerun_trains_nothing_again(halving_run):
    from rescale4dl_bmz.sweep.flow import run_sweep

    config, first = halving_run
    out = Path(config.out)
    survivor = first["chosen"]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "halving.json", out / survivor / "model" / "model.keras")}
    again = run_sweep(config)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["chosen"] == first["chosen"]
