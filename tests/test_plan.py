"""`plan`: the acquisition planner, checked against numbers worked out by hand."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.decide.acquisition import plan_acquisition, plan_areas, plan_density, plan_parse_camera
from rescale4dl_bmz.decide.acquisition_text import plan_bytes, plan_format


def test_numbers_by_hand():
    # 2048 x 2048 camera, one field every 2 s; objects of 400 px at og, 100 px at ds2; the
    # annotations hold 4 objects per 512 x 512 original pixels
    density = 4 / 512 ** 2
    plan = plan_acquisition(["ds2", "og"], {"og": 400.0, "ds2": 100.0}, (2048, 2048), 2.0, 0.08, chosen="ds2",
                            density=density)
    assert list(plan["factor"]) == ["og", "ds2"]
    og, ds2 = plan.iloc[0], plan.iloc[1]
    assert og["objects_per_fov"] == pytest.approx(64)  # 16 annotated fields of 4 objects
    assert og["packing_limit_per_fov"] == pytest.approx(2048 * 2048 / 400)  # 10485.76, wall to wall
    assert og["objects_per_hour"] == pytest.approx(64 * 1800)
    assert og["bytes_per_hour"] == ds2["bytes_per_hour"] == pytest.approx(2048 * 2048 * 2 * 1800)
    assert og["bytes_per_object"] == pytest.approx(2048 * 2048 * 2 / 64)
    assert ds2["bytes_per_object"] == pytest.approx(og["bytes_per_object"] / 4)
    assert ds2["objects_per_fov"] == pytest.approx(4 * og["objects_per_fov"])
    assert ds2["pixel_size_um"] == pytest.approx(0.16) and ds2["fov_width_um"] == pytest.approx(2048 * 0.16)
    assert list(plan["chosen"]) == [False, True]


def test_unknown_pixel_size_leaves_fields_unknown():
    plan = plan_acquisition(["og"], {"og": 50.0}, (100, 200), 1.0, density=0.001)
    assert plan.loc[0, "pixel_size_um"] is None and plan.loc[0, "fov_width_um"] is None
    assert plan.loc[0, "objects_per_fov"] == pytest.approx(20.0)
    assert "unknown" in plan_format(plan)


def test_missing_areas_come_from_the_nearest_measured_factor():
    areas = plan_areas(["up2", "og", "ds2", "ds8"], {"og": 400.0, "ds2": 90.0})
    assert areas["og"] == (400.0, "measured")
    assert areas["up2"] == (1600.0, "from og")
    assert areas["ds8"] == (pytest.approx(90.0 / 16), "from ds2")
    with pytest.raises(InputError, match="object area"):
        plan_areas(["og"], {})


@pytest.mark.parametrize("text,expected", [("2048x2048", (2048, 2048)), (" 640 X 480 ", (640, 480)), ("5*7", (5, 7))])
def test_camera_parsing(text, expected):
    assert plan_parse_camera(text) == expected


@pytest.mark.parametrize("text", ["2048", "0x100", "axb", "-5x5", "2048x"])
def test_bad_camera(text):
    with pytest.raises(InputError, match="camera"):
        plan_parse_camera(text)


@pytest.mark.parametrize("kwargs,match", [({"tau_s": 0}, "tau"), ({"tau_s": float("inf")}, "tau"),
                                          ({"pixel_size_um": -0.1}, "pixel-size"), ({"chosen": "ds4"}, "ds4"),
                                          ({"camera": (0, 10)}, "camera"), ({"density": 0.0}, "objects per original")])
def test_bad_arguments(kwargs, match):
    args = {"factors": ["og"], "areas": {"og": 10.0}, "camera": (10, 10), "tau_s": 1.0, "density": 0.01} | kwargs
    with pytest.raises(InputError, match=match):
        plan_acquisition(**args)


def test_bytes_text():
    assert plan_bytes(512) == "512 B" and plan_bytes(15_099_494_400) == "15.1 GB" and plan_bytes(2e3) == "2 kB"


def write_run(root, pixel=0.08):
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"task": "instance", "pixel_size_um": pixel, "factors": ["og", "ds2", "ds4"],
                                               "image_shape": [512, 512], "dataset": "synthetic"}))
    rows, per = [], []
    for f, s, iou in (("og", 1, 0.80), ("ds2", 2, 0.80), ("ds4", 4, 0.50)):
        for i, d in enumerate((-0.01, 0.0, 0.01, 0.02)):
            per.append({"factor": f, "grid": "native", "image": f"im{i}", "iou": iou + d * (1 + s / 10)})
        rows.append({"factor": f, "scale": s, "grid": "native", "iou_mean": iou + 0.005, "mean_object_area_px": 400 / s ** 2,
                     "objects_per_original_px": 4 / 512 ** 2, "status": "done"})
    pd.DataFrame(rows).to_csv(root / "summary.csv", index=False)
    pd.DataFrame(per).to_csv(root / "per_image.csv", index=False)
    return root


def test_cli_highlights_selected_factor_and_writes_plan(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    out = tmp_path / "plan.csv"
    assert main(["plan", "--camera", "2048x2048", "--tau", "2", str(run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    marked = [ln for ln in text.splitlines() if ln.startswith("->")]
    assert len(marked) == 1 and marked[0].split()[1] == "ds2"  # ds4 is significantly worse
    plan = pd.read_csv(out)
    assert list(plan.loc[plan["chosen"], "factor"]) == ["ds2"]
    # density counted in the annotations (4 per 512^2 original px) x the field at ds2 (4x the area)
    assert plan.set_index("factor").loc["ds2", "objects_per_fov"] == pytest.approx(4 * 16 * 4)
    assert plan.set_index("factor").loc["ds2", "packing_limit_per_fov"] == pytest.approx(2048 * 2048 / 100)
    md = tmp_path / "plan.md"
    assert main(["plan", "--camera", "1024x1024", "--tau", "0.5", "--factor", "ds4", "--pixel-size", "0.1",
                 str(run), "--out", str(md)]) == 0
    assert "| **yes** | **ds4** | **0.4 µm**" in md.read_text()


def test_cli_bad_input_writes_nothing(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    out = tmp_path / "plan.csv"
    for args in (["--camera", "2048", "--tau", "2"], ["--camera", "2048x2048", "--tau", "0"],
                 ["--camera", "2048x2048", "--tau", "1", "--pixel-size", "0"],
                 ["--camera", "2048x2048", "--tau", "1", "--factor", "ds16"]):
        assert main(["plan", *args, str(run), "--out", str(out)]) == 2
    assert main(["plan", "--camera", "8x8", "--tau", "1", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "--camera" in err and "--tau" in err and "pixel size must be a positive" in err and "ds16" in err


def test_density_from_summary_or_per_image():
    summary = pd.DataFrame({"factor": ["ds2", "og"], "grid": ["native", "native"],
                            "objects_per_original_px": [2e-5, 1.5e-5]})
    assert plan_density(summary) == pytest.approx(1.5e-5)  # the finest factor
    per = pd.DataFrame({"factor": ["og", "og", "ds2"], "grid": "native", "n_true": [3, 5, 1],
                        "fov_area_px": [1000.0, 1000.0, 1000.0]})
    assert plan_density(pd.DataFrame({"factor": ["og"]}), per) == pytest.approx(8 / 2000)
    with pytest.raises(InputError, match="rerun the evaluation"):
        plan_density(pd.DataFrame({"factor": ["og"]}))
