"""Sweeping a bioimage.io package without training (issue: pretrained-model sweep).

A U-Net trained at ds2 on C. elegans wells is exported by a one-factor training sweep; the
package is then swept over five factors on held-out wells it never saw. Its best factor must lie
at or next to ds2, and the package's declared pixel size is reported beside the measured best.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rescale4dl_bmz.cli.main import main

TEST_WELLS = ["A03", "A17", "B05", "B20"]


@pytest.fixture(scope="module")
def package(shared_data, tmp_path_factory):
    """A model trained at ds2 (pixel size declared 1 µm -> 2 µm in the package)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    worms = shared_data / "celegans_bbbc010"
    config = tmp_path_factory.mktemp("cfg") / "train.yaml"
    config.write_text(
        f"images: {worms / 'images'}\nmasks: {worms / 'masks'}\nout: {out}\ntask: semantic\n"
        f"factors: [ds2]\npixel_size_um: 1.0\ntest_images: {json.dumps(TEST_WELLS)}\n"
        "training: {learning_rate: 0.002, steps_per_epoch: 15, batch_size: 4,"
        " architecture: {kind: unet, depth: 2, base_filters: 8}}\n")
    assert main(["sweep", str(config), "--epochs", "4"]) == 0
    assert (out / "model.zip").is_file()
    return out / "model.zip"


def _sweep(package: Path, shared_data: Path, out: Path, factors: list[str], pixel_size: float, wells) -> int:
    worms = shared_data / "celegans_bbbc010"
    return main(["sweep", "--model", str(package), "--images", str(worms / "images"), "--masks",
                 str(worms / "masks"), "--out", str(out), "--pixel-size", str(pixel_size),
                 "--factors", *factors, "--test-images", *wells])


def test_package_sweep_finds_the_factor_it_was_trained_at(package, shared_data, tmp_path, capsys):
    out = tmp_path / "pretrained"
    assert _sweep(package, shared_data, out, ["up2", "og", "ds2", "ds4", "ds8"], 1.0, TEST_WELLS) == 0
    summary = pd.read_csv(out / "summary.csv")
    native = summary[summary["grid"] == "native"].set_index("factor")
    assert set(native.index) == {"up2", "og", "ds2", "ds4", "ds8"}
    assert (native["status"] == "done").all()
    best = native["iou_mean"].idxmax()
    assert best in {"og", "ds2", "ds4"}, native["iou_mean"].to_dict()
    assert native.loc["ds2", "iou_mean"] > native.loc["ds8", "iou_mean"]
    assert not any(out.glob("*/model"))  # nothing was trained
    run = json.loads((out / "run.json").read_text())
    assert run["package"]["pixel_size_um"] == pytest.approx(2.0, rel=1e-9)
    report = (out / "report.md").read_text()
    assert "Pretrained package" in report and "declares 2 µm" in report and "factor ds2" in report
    assert "declares 2 µm" in capsys.readouterr().out


def test_package_pixel_size_differs_from_the_data(package, shared_data, tmp_path):
    out = tmp_path / "other_pixel"
    assert _sweep(package, shared_data, out, ["og", "ds2", "ds4", "ds8"], 0.5, TEST_WELLS[:2]) == 0
    selection = json.loads((out / "selection.json").read_text())
    report = (out / "report.md").read_text()
    # the package wants 2 µm pixels: 4x this data's 0.5 µm, i.e. factor ds4 of this data
    assert "declares 2 µm (4x this data's pixel size, factor ds4)" in report
    assert selection["pixel_size_um"] == pytest.approx(0.5 * selection["scale"])


def test_bad_package_is_refused_before_any_rescaling(shared_data, tmp_path, capsys):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    out = tmp_path / "run"
    assert _sweep(broken, shared_data, out, ["og", "ds2"], 1.0, TEST_WELLS[:1]) == 2
    assert "broken.zip" in capsys.readouterr().err
    assert not out.exists()
