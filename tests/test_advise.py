"""`advise`: object size per factor against the receptive field, before any training."""

import json

import numpy as np
import pytest
from skimage.measure import regionprops

from rescale4dl_bmz.decide.advise import advise, object_size_measure, receptive_field, recommended_range
from rescale4dl_bmz.decide.advise_text import no_window_advice
from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.files.images import read_mask
from rescale4dl_bmz.factors import default_ladder, parse_factor


def test_receptive_fields_match_the_paper():
    assert [receptive_field("unet", depth=d).theoretical_px for d in (1, 2, 3, 4)] == [21, 49, 105, 217]
    sd = receptive_field("stardist")
    assert sd.theoretical_px == 200 and sd.effective_px == 94


def test_window_follows_rf_over_two_and_six_pixels():
    # Round objects (equivalent diameter ~ width): the equivalent diameter decides, both limits.
    rows = advise([24.0], [22.0], default_ladder(), receptive_field("unet"))
    assert {r.size_measure for r in rows} == {"equivalent_diameter"}
    verdicts = {r.factor: r.verdict for r in rows}
    # 24 px at og < 49/2; 48 px at up2 > 24.5; 24/4 = 6 px at ds4 is still >= 6 px; 3 px at ds8 < 6 px
    assert verdicts == {"up4": "too wide", "up2": "too wide", "og": "recommended", "ds2": "recommended",
                        "ds4": "recommended", "ds8": "too narrow", "ds16": "too narrow"}
    assert recommended_range(rows) == ["og", "ds2", "ds4"]
    hopeless = {r.factor for r in rows if r.hopeless}
    assert hopeless == {"ds16"}  # 1.5 px < 3 px; ds8 (3 px) is not below 3
    assert [round(r.size_px, 6) for r in rows] == [96, 48, 24, 12, 6, 3, 1.5]
    assert [r.pct_diameter_per_pixel for r in rows] == pytest.approx([100 / x for x in (96, 48, 24, 12, 6, 3, 1.5)])


def test_elongated_objects_use_the_width_for_both_limits():
    """Worms: width 10 px, equivalent diameter 36 px. The old rule (too wide from the equivalent
    diameter, too narrow from the width) ruled out every factor; one size keeps og in range."""
    rows = advise([36.0] * 5, [10.0] * 5, default_ladder(), receptive_field("unet"))
    assert {r.size_measure for r in rows} == {"width"}
    assert recommended_range(rows) == ["up2", "og"]
    og = next(r for r in rows if r.factor == "og")
    assert og.size_px == 10 and og.pct_diameter_per_pixel == pytest.approx(10.0) and og.confidence == 1.0


def test_always_recommends_one_factor_and_says_what_to_do():
    rows = advise([14.0, 13.0], [13.0, 12.0], [parse_factor("ds8"), parse_factor("ds16")], receptive_field("unet"))
    assert recommended_range(rows) == ["ds8"]  # the closest to the window
    ds8 = rows[0]
    assert ds8.verdict.startswith("closest") and ds8.confidence == 0.0
    assert "finer factors" in ds8.reason
    wide = advise([400.0], [390.0], [parse_factor("og")], receptive_field("unet"))
    assert recommended_range(wide) == ["og"] and "larger receptive field" in no_window_advice(wide, receptive_field())


def test_confidence_is_the_share_of_objects_inside():
    rows = advise([5.0, 10.0, 20.0, 40.0], [5.0, 10.0, 20.0, 40.0], [parse_factor("og")], receptive_field("unet"))
    assert rows[0].confidence == pytest.approx(0.5)  # 10 and 20 px inside 6-24.5 px


def test_size_measure_rule():
    assert object_size_measure([10, 11], [10, 10]) == "equivalent_diameter"
    assert object_size_measure([36, 30], [10, 9]) == "width"


def test_advise_cli_on_real_masks(shared_data, capsys):
    masks = shared_data / "saureus_crop" / "masks"
    assert main(["advise", str(masks), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # pixel size read from the mask file's ImageJ metadata is absent (masks carry none) -> unknown
    expected = np.median([r.equivalent_diameter_area for r in regionprops(read_mask(masks / "1.tif"))])
    og = next(r for r in report["factors"] if r["factor"] == "og")
    ds2 = next(r for r in report["factors"] if r["factor"] == "ds2")
    assert report["size_measure"] == "equivalent_diameter"  # cocci are round
    assert og["size_px"] == pytest.approx(expected) and og["equivalent_diameter_px"] == pytest.approx(expected)
    assert ds2["size_px"] == pytest.approx(expected / 2)
    assert report["n_objects"] == 127 and report["rf_px"] == 49
    assert report["recommended"] == ["og", "ds2"]


@pytest.mark.parametrize("folder, best", [("celegans_bbbc010/masks", "og"), ("ecoli_colicoords/masks", "og")])
def test_advise_range_holds_measured_best_on_real_data(shared_data, capsys, folder, best):
    """The measured best factor of the held-out sweeps (README, "How the advisor decides") is in
    the recommended range (worms: og best, ds2 next; E. coli: og best, ds2 next)."""
    assert main(["advise", str(shared_data / folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size_measure"] == "width"
    assert best in report["recommended"]


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
