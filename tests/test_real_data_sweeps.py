"""Every factor trains, on the embedded demo and on real sparse and elongated data.

A sweep test that passes while a factor failed is a defect, so each test asserts that every
requested factor finished. Budgets are tiny: these check that the pipeline completes, not what
it recommends (benchmarks/ does that).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rescale4dl_bmz.sweep.config import make_sweep_config

TINY = {"architecture": {"kind": "unet", "depth": 2, "base_filters": 4}, "steps": 4, "steps_per_epoch": 2,
        "learning_rate": 1e-3, "batch_size": 2}


def _all_factors_done(out: Path, factors: list[str]) -> pd.DataFrame:
    summary = pd.read_csv(out / "summary.csv", dtype={"factor": str})
    status = summary.drop_duplicates("factor").set_index("factor")["status"]
    assert status.reindex(factors).eq("done").all(), status.to_dict()
    return summary


def test_the_demo_finishes_every_factor(tmp_path):
    """`rescale4dl demo` as the README runs it, in a fresh process: exit 0, every factor done."""
    from rescale4dl_bmz.cli.demo import DEMO_FACTORS

    done = subprocess.run([sys.executable, "-m", "rescale4dl_bmz", "demo"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "FAILED" not in done.stdout and (tmp_path / "rescale4dl_demo" / "model.zip").is_file()
    _all_factors_done(tmp_path / "rescale4dl_demo", DEMO_FACTORS)


@pytest.mark.parametrize("dataset, test_images", [
    ("ecoli_colicoords", None),                               # sparse: a few rods per field, some empty
    ("celegans_bbbc010", ["A01", "B01", "A13"]),             # long thin worms
])
def test_real_data_sweep_finishes_every_factor(shared_data, tmp_path, dataset, test_images):
    from rescale4dl_bmz.sweep.flow import run_sweep

    factors = ["og", "ds2", "ds4"]
    folder = shared_data / dataset
    names = sorted(p.stem for p in (folder / "images").glob("*.tif"))
    test = [n for n in names if any(n.startswith(t) for t in test_images)] if test_images else None
    config = make_sweep_config(images=folder / "images", masks=folder / "masks", out=tmp_path / "run",
                               task="semantic", factors=factors, test_images=test, training=TINY, export=False)
    result = run_sweep(config)
    assert not result["failed"] and result["n_done"] == len(factors)
    summary = _all_factors_done(tmp_path / "run", factors)
    # names stay strings end to end (E. coli images are named like "00003")
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv", dtype=str)
    assert set(per_image["image"]) <= set(names)
    assert summary["iou_mean"].notna().any()
