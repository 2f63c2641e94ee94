"""A `schedule: halving` sweep end to end (real training, real Prefect): a factor whose objects
all but vanish is stopped after the first round, the survivor gets the full budget, the summary,
report and halving.json say so, and a rerun trains nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rescale4dl_bmz.files.demo_data import write_demo_dataset
from rescale4dl_bmz.sweep.config import make_sweep_config

pytestmark = pytest.mark.e2e

TRAINING = {"architecture": {"kind": "unet", "depth": 2, "base_filters": 8}, "steps": 8, "steps_per_epoch": 2,
            "learning_rate": 1e-2, "batch_size": 2}


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory):
    from rescale4dl_bmz.sweep.flow import run_sweep

    images, masks = write_demo_dataset(tmp_path_factory.mktemp("demo"))
    # at ds8 the nuclei are 2-3 px wide: nearly all edge, nothing to segment well
    config = make_sweep_config(images=images, masks=masks, out=tmp_path_factory.mktemp("sweep") / "run",
                               task="semantic", factors=["og", "ds8"], test_images=["q4"], training=TRAINING,
                               schedule="halving", halving_rounds=2, halving_margin=0.05, export=False)
    return config, run_sweep(config)


def test_the_factor_behind_stops_and_the_survivor_gets_the_full_budget(halving_run):
    config, result = halving_run
    out = Path(config.out)
    decision = json.loads((out / "halving.json").read_text())
    og, ds8 = decision["factors"]["og"], decision["factors"]["ds8"]
    assert og["scores"][0] - ds8["scores"][0] > 0.05, decision
    assert ds8["status"] == "stopped" and ds8["stopped_after_round"] == 1 and ds8["steps"] == 4
    assert og["status"] == "done" and og["steps"] == og["budget_steps"] == 8 and len(og["scores"]) == 2
    assert "more than 0.05" in decision["rule"]
    assert not (out / "ds8" / "model").exists() and not (out / "ds8" / "predictions").exists()
    assert json.loads((out / "og" / "model" / "cost.json").read_text())["steps"] == 8
    assert result["chosen"] == "og" and not result["failed"]


def test_summary_and_report_state_the_decision(halving_run):
    config, _ = halving_run
    out = Path(config.out)
    summary = pd.read_csv(out / "summary.csv")
    rows = summary.drop_duplicates("factor").set_index("factor")
    assert rows.loc["ds8", "status"] == "stopped" and rows.loc["ds8", "stopped_after_round"] == 1
    assert rows.loc["ds8", "steps"] == 4 and rows.loc["og", "steps"] == 8
    assert (rows["budget_steps"] == 8).all()
    assert len(str(rows.loc["og", "halving_scores"]).split()) == 2
    report = (out / "report.md").read_text()
    assert "Successive halving" in report and "more than 0.05" in report and "stopped after round 1" in report
    assert "Successive halving" in (out / "report.html").read_text()


def test_rerun_trains_nothing_again(halving_run):
    from rescale4dl_bmz.sweep.flow import run_sweep

    config, first = halving_run
    out = Path(config.out)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "halving.json", out / "og" / "model" / "model.keras")}
    again = run_sweep(config)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["chosen"] == first["chosen"]
