"""`advise`: object size per factor against the receptive field, before any training."""

import json

import numpy as np
import pytest
from skimage.measure import regionprops

from rescale4dl_bmz.advise import advise, receptive_field, recommended_range
from rescale4dl_bmz.cli import main
from rescale4dl_bmz.dataset import read_mask
from rescale4dl_bmz.factors import default_ladder


def test_receptive_fields_match_the_paper():
    assert [receptive_field("unet", depth=d).theoretical_px for d in (1, 2, 3, 4)] == [21, 49, 105, 217]
    sd = receptive_field("stardist")
    assert sd.theoretical_px == 200 and sd.effective_px == 94


def test_window_follows_rf_over_two_and_six_pixels():
    rows = advise([24.0], [20.0], default_ladder(), receptive_field("unet"))
    verdicts = {r.factor: r.verdict for r in rows}
    # 24 px at og < 49/2; 48 px at up2 > 24.5; width 20/4 = 5 px at ds4 < 6 px
    assert verdicts == {"up4": "too wide", "up2": "too wide", "og": "recommended", "ds2": "recommended",
                        "ds4": "too narrow", "ds8": "too narrow", "ds16": "too narrow"}
    assert recommended_range(rows) == ["og", "ds2"]
    hopeless = {r.factor for r in rows if r.hopeless}
    assert hopeless == {"ds8", "ds16"}  # widths 2.5 and 1.25 px
    assert [round(r.diameter_px, 6) for r in rows] == [96, 48, 24, 12, 6, 3, 1.5]


def test_advise_cli_on_real_masks(shared_data, capsys):
    masks = shared_data / "saureus_crop" / "masks"
    assert main(["advise", str(masks), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # pixel size read from the mask file's ImageJ metadata is absent (masks carry none) -> unknown
    expected = np.median([r.equivalent_diameter_area for r in regionprops(read_mask(masks / "1.tif"))])
    og = next(r for r in report["factors"] if r["factor"] == "og")
    ds2 = next(r for r in report["factors"] if r["factor"] == "ds2")
    assert og["diameter_px"] == pytest.approx(expected)
    assert ds2["diameter_px"] == pytest.approx(expected / 2)
    assert report["n_objects"] == 127 and report["rf_px"] == 49
    assert report["recommended"] == ["og", "ds2"]


def test_advise_cli_table_and_pixel_size(shared_data, capsys):
    assert main(["advise", str(shared_data / "celegans_bbbc010" / "masks"), "--pixel-size", "1.5",
                 "--model", "stardist", "--factors", "og", "ds2"]) == 0
    out = capsys.readouterr().out
    assert "681 objects in 48 masks" in out and "1.5 µm" in out and "stardist receptive field 94 px" in out
    ds2 = next(line.split() for line in out.splitlines() if line.split()[:1] == ["ds2"])
    assert ds2[1] == "3"  # pixel size at ds2 = 2 x 1.5 µm


def test_advise_cli_bad_input(tmp_path, capsys):
    assert main(["advise", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["advise", str(tmp_path), "--pixel-size", "0"]) == 2
