"""`select`: the factor after a sweep, from hand-written sweep tables whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.metrics import paired_test
from rescale4dl_bmz.decide.equivalence import select_paired_test
from rescale4dl_bmz.decide.select import select_factor
from rescale4dl_bmz.decide.select_text import select_format

SCALES = {"up2": 0.5, "og": 1.0, "ds2": 2.0, "ds4": 4.0, "ds8": 8.0}
# per-image IoUs (8 images): ds2 best; og and ds4 within noise of it; ds8 clearly worse; up2 worse
OFFSETS = np.array([0.01, -0.02, 0.015, 0.0, -0.01, 0.02, -0.005, 0.005])
MEANS = {"up2": 0.70, "og": 0.80, "ds2": 0.81, "ds4": 0.805, "ds8": 0.60}

def per_image_table(means=MEANS, grids=("native", "sampled"), n=8, shuffle_seed=0):
    rng = np.random.default_rng(shuffle_seed)
    rows = []
    for grid in grids:
        for f, m in means.items():
            noise = OFFSETS[:n] if f == "ds2" else rng.permutation(OFFSETS[:n]) * 0.5
            for i, v in enumerate(m + noise):
                rows.append({"factor": f, "scale": SCALES[f], "grid": grid, "image": f"im{i}", "iou": float(v)})
    return pd.DataFrame(rows)

def summary_table(per_image, pixel=0.1, status=None):
    rows = []
    for (f, grid), g in per_image.groupby(["factor", "grid"], sort=False):
        s = SCALES[f]
        rows.append({"factor": f, "scale": s, "pixel_size_um": pixel * s, "grid": grid, "n_images": len(g),
                     "iou_mean": g["iou"].mean(), "iou_ci_low": g["iou"].mean() - 0.01,
                     "iou_ci_high": g["iou"].mean() + 0.01, "mean_object_area_px": 400.0 / s ** 2,
                     "throughput": 1e6 / (400.0 / s ** 2), "bytes_per_object": 800.0 / s ** 2,
                     "status": (status or {}).get(f, "done")})
    return pd.DataFrame(rows)

@pytest.fixture
def tables():
    per = per_image_table({**MEANS, "ds4": 0.81})  # ds4 practically equivalent to the best, ds2
    return summary_table(per), per

def test_default_picks_coarsest_practically_equivalent():
    per = per_image_table({**MEANS, "ds4": 0.81})
    sel = select_factor(summary_table(per), per, pixel_size_um=0.1)
    assert sel.factor == "ds4" and sel.best_factor == "ds2" and sel.grid == "native"
    assert sel.pixel_size_um == pytest.approx(0.4)
    t = sel.table.set_index("factor")
    assert t.loc["ds8", "p_value"] == pytest.approx(2 / 2 ** 8) and not t.loc["ds8", "equivalent"]  # exact sign-flip
    assert t.loc["ds8", "decision"] == "worse" and t.loc["ds8", "n_lower_by_margin"] == 8
    assert t.loc["ds4", "decision"] == "equivalent" and t.loc["ds4", "iou_diff_ci_low"] > -0.02
    assert t.loc["up2", "decision"] == "worse"
    assert t.loc["ds4", "units"] == "test images" and t.loc["ds4", "n_paired"] == 8
    assert t.loc["ds4", "iou_diff_ci_low"] <= t.loc["ds4", "iou_diff"] <= t.loc["ds4", "iou_diff_ci_high"]
    assert list(sel.table["chosen"]) == [f == "ds4" for f in sel.table["factor"]]
    assert "ds4" in sel.reason and "95% CI" in sel.reason and "ds2" in sel.reason
    # gains against og: measured from the summary's areas and bytes
    assert sel.gains["objects_per_fov"]["ratio"] == pytest.approx(16.0)
    assert sel.gains["storage_per_object"]["ratio"] == pytest.approx(1 / 16)
    assert sel.gains["inference_speed"]["ratio"] == pytest.approx(16.0)
    assert "theoretical" in sel.gains["inference_speed"]["basis"]


def test_undecided_is_not_chosen():
    """ds4 0.805: its interval reaches past -0.02 (lower bound -0.0203): undecided, so ds2 stays."""
    per = per_image_table()
    summary = summary_table(per)
    sel = select_factor(summary, per)
    t = sel.table.set_index("factor")
    assert t.loc["ds4", "decision"] == "undecided" and sel.factor == "ds2"
    assert "No coarser factor is equivalent" in sel.reason


def test_five_images_lower_everywhere_are_never_equivalent():
    """The issue's case: ds2 lower than og on 5 of 5 images; the old sign test (p >= 0.0625)
    fell back to CI overlap and called it equivalent. ds16 collapsed must be worse too."""
    og = np.array([0.53, 0.50, 0.55, 0.52, 0.51])
    rows = []
    for f, vals in {"og": og, "ds2": og - np.array([0.03, 0.025, 0.04, 0.03, 0.035]),
                    "ds16": np.array([0.03, 0.02, 0.05, 0.03, 0.02])}.items():
        rows += [{"factor": f, "scale": SCALES.get(f, 16.0), "grid": "native", "image": f"im{i}", "iou": v}
                 for i, v in enumerate(vals)]
    per = pd.DataFrame(rows)
    summary = pd.DataFrame([{"factor": f, "grid": "native", "iou_mean": g["iou"].mean(),
                             "iou_ci_low": g["iou"].min(), "iou_ci_high": g["iou"].max()}
                            for f, g in per.groupby("factor", sort=False)])
    sel = select_factor(summary, per)
    t = sel.table.set_index("factor")
    assert sel.factor == "og"
    assert t.loc["ds2", "decision"] == "worse" and t.loc["ds2", "n_lower_by_margin"] == 5
    assert t.loc["ds16", "decision"] == "worse"
    # A margin wide enough to cover the drop makes ds2 equivalent, and says so.
    assert select_factor(summary, per, tolerance=0.06).factor == "ds2"


def test_paired_decision_uses_the_metrics_test_and_knows_its_power():
    best = np.array([0.8, 0.82, 0.79, 0.85, 0.81, 0.83, 0.80, 0.84])
    other = best - np.array([0.02, 0.03, -0.01, 0.04, 0.02, 0.03, 0.01, 0.02])
    d = select_paired_test(best, other)
    assert d.p_value == pytest.approx(paired_test(other, best).p_value) and d.mean_difference < 0
    assert d.min_p_value == pytest.approx(2 / 2 ** 8) and d.worse(0.05) is (d.p_value < 0.05)
    assert select_paired_test(best, best + 0.1).worse(0.05) is False   # better, whatever the p-value
    assert select_paired_test(best, best - 0.1).worse(0.05) is True     # uniformly worse
    few = select_paired_test(best[:5], best[:5] - 0.1)                  # 5 images: p >= 2/32 > 0.05
    assert few.min_p_value == pytest.approx(2 / 32) and few.worse(0.05) is None and few.worse(0.1) is True
    assert select_paired_test(best[:1], best[:1]).worse(0.05) is None


def test_four_images_decide_with_the_margin():
    # 4 images: the exact sign test cannot reach 0.05; the effect size interval can
    per = per_image_table({"og": 0.80, "ds2": 0.81, "ds8": 0.30}, grids=("native",), n=4)
    sel = select_factor(summary_table(per), per)
    t = sel.table.set_index("factor")
    assert sel.factor == "ds2" and not t.loc["ds8", "equivalent"] and t.loc["ds8", "decision"] == "worse"
    assert "4 test images" in t.loc["ds8", "test"]


def test_tolerance_is_the_margin(tables):
    summary, per = tables
    assert select_factor(summary, per, tolerance=0.25).factor == "ds8"
    assert select_factor(summary, per, tolerance=0.0).factor == "ds2"
    sel = select_factor(summary, per, tolerance=0.03)
    assert sel.factor == "ds4" and "margin 0.03" in sel.reason

def test_other_criteria(tables):
    summary, per = tables
    assert select_factor(summary, per, "max-iou").factor == "ds2"
    sel = select_factor(summary, per, "iou-x-throughput")
    t = sel.table.set_index("factor")
    expected = (t["iou_mean"] * t["throughput"]).idxmax()
    assert sel.factor == expected == "ds8"
    summary = summary.assign(diameter_rel_error=summary["factor"].map(
        {"up2": 0.2, "og": 0.05, "ds2": 0.03, "ds4": 0.04, "ds8": 0.3}))
    assert select_factor(summary, per, "diameter-fidelity").factor == "ds2"

def test_diameter_fidelity_from_predicted_and_true_diameters(tables):
    summary, per = tables
    gt = {"up2": 40.0, "og": 20.0, "ds2": 10.0, "ds4": 5.0, "ds8": 2.5}
    pred = {"up2": 44.0, "og": 21.0, "ds2": 10.8, "ds4": 5.05, "ds8": 3.5}
    summary = summary.assign(gt_mean_diameter_px=summary["factor"].map(gt),
                             pred_mean_diameter_px=summary["factor"].map(pred))
    assert select_factor(summary, per, "diameter-fidelity").factor == "ds4"
    with pytest.raises(InputError, match="diameter"):
        select_factor(summary.drop(columns=["pred_mean_diameter_px"]), per, "diameter-fidelity")

def test_ties_go_to_the_coarser_factor():
    per = per_image_table({"og": 0.8, "ds2": 0.8, "ds4": 0.5}, grids=("native",))
    per.loc[per["factor"] == "ds2", "iou"] = per.loc[per["factor"] == "og", "iou"].to_numpy()
    summary = summary_table(per)
    assert select_factor(summary, per, "max-iou").factor == "ds2"

def test_grid_choice_and_sampled_fallback():
    per = per_image_table({**MEANS, "ds4": 0.81})
    # make ds4 bad on the sampled grid only
    per2 = per.copy()
    per2.loc[(per2["grid"] == "sampled") & (per2["factor"] == "ds4"), "iou"] -= 0.2
    summary2 = summary_table(per2)
    assert select_factor(summary2, per2).factor == "ds4"  # native by default
    assert select_factor(summary2, per2, grid="sampled").factor == "ds2"
    only_sampled = summary2[summary2["grid"] == "sampled"]
    assert select_factor(only_sampled, per2).grid == "sampled"
    with pytest.raises(InputError, match="grid"):
        select_factor(only_sampled, per2, grid="native")

def test_unfinished_factors_are_ignored():
    per = per_image_table({**MEANS, "ds4": 0.81})
    summary = summary_table(per, status={"ds4": "failed", "og": "pruned"})
    sel = select_factor(summary, per)
    assert set(sel.table["factor"]) == {"up2", "ds2", "ds8"} and sel.factor == "ds2"
    with pytest.raises(InputError, match="no finished factor"):
        select_factor(summary_table(per, status={f: "failed" for f in SCALES}), per)

def test_without_per_image_data_the_means_decide(tables):
    summary, _ = tables
    sel = select_factor(summary, None)
    t = sel.table.set_index("factor")
    assert sel.factor == "ds4" and t.loc["ds4", "units"] == "factor means"  # 0.006 below, within 0.02
    assert "means only" in sel.reason


def test_single_image_uses_the_means():
    per = per_image_table(n=1)  # ds2 0.82 best; ds4 0.81
    sel = select_factor(summary_table(per), per)
    assert sel.factor == "ds4" and "means only (1 paired image)" in sel.reason
    assert select_factor(summary_table(per), per, tolerance=0.001).factor == "ds2"


def test_unknown_pixel_size_is_reported_relative(tables):
    summary, per = tables
    sel = select_factor(summary.drop(columns=["pixel_size_um"]), per)
    assert sel.pixel_size_um is None and sel.pixel_size_text == "4x the original pixel size"
    assert select_factor(summary, per).pixel_size_um == pytest.approx(0.4)  # inferred from the table
    gains = select_factor(summary.drop(columns=["mean_object_area_px", "bytes_per_object"]), per).gains
    assert gains["objects_per_fov"] == {"ratio": 16.0, "basis": "theoretical (scale^2)"}

@pytest.mark.parametrize("kwargs,match", [({"criterion": "best"}, "criterion"), ({"tolerance": -0.1}, "tolerance"),
                                          ({"pixel_size_um": 0.0}, "pixel size"), ({"alpha": 1.5}, "alpha")])
def test_bad_arguments(tables, kwargs, match):
    summary, per = tables
    with pytest.raises(InputError, match=match):
        select_factor(summary, per, **kwargs)

def write_run(root, summary, per, pixel=0.1, task="semantic"):
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"task": task, "pixel_size_um": pixel, "factors": list(SCALES),
                                               "image_shape": [512, 512], "dataset": "synthetic"}))
    summary.to_csv(root / "summary.csv", index=False)
    per.to_csv(root / "per_image.csv", index=False)
    return root

def test_cli_prints_and_writes_json(tables, tmp_path, capsys):
    summary, per = tables
    run = write_run(tmp_path / "run", summary, per)
    out = tmp_path / "sel.json"
    assert main(["select", str(run), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Chosen factor: ds4" in text and "Recommended pixel size: 0.4 µm" in text
    assert "objects per field of view: x16" in text and "storage per object: x0.0625 (16x less)" in text
    data = json.loads(out.read_text())
    assert data["factor"] == "ds4" and data["pixel_size_um"] == pytest.approx(0.4)
    assert len(data["table"]) == 5 and data["gains"]["objects_per_fov"]["ratio"] == pytest.approx(16)
    assert main(["select", str(run), "--criterion", "max-iou", "--pixel-size", "0.2"]) == 0
    assert "Recommended pixel size: 0.4 µm" in capsys.readouterr().out  # ds2 x 0.2 µm

def test_cli_bad_input_writes_nothing(tables, tmp_path, capsys):
    summary, per = tables
    out = tmp_path / "sel.json"
    run = write_run(tmp_path / "run", summary, per)
    assert main(["select", str(run), "--pixel-size", "-1", "--json", str(out)]) == 2
    assert main(["select", str(tmp_path / "missing"), "--json", str(out)]) == 2
    failed = write_run(tmp_path / "failed", summary_table(per, status={f: "failed" for f in SCALES}), per)
    assert main(["select", str(failed), "--json", str(out)]) == 2
    (run / "summary.csv").write_text("factor,grid\nog,native\n")
    assert main(["select", str(run), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pixel size must be a positive number" in err and "no finished factor" in err and "iou_mean" in err
    assert not out.exists()

def test_format_lists_every_factor(tables):
    summary, per = tables
    text = select_format(select_factor(summary, per, pixel_size_um=0.1))
    lines = [ln for ln in text.splitlines() if ln.startswith(("->", "    ")) and "factor" not in ln]
    assert [ln.split()[1] if ln.startswith("->") else ln.split()[0] for ln in lines] == ["up2", "og", "ds2", "ds4", "ds8"]
    assert [ln for ln in lines if ln.startswith("->")][0].split()[1] == "ds4"


def test_run_folder_validation(tables, tmp_path):
    from rescale4dl_bmz.files.run_folder import load_run

    summary, per = tables
    run = write_run(tmp_path / "run", summary, per)
    loaded = load_run(run)
    assert loaded.task == "semantic" and loaded.pixel_size_um == 0.1 and loaded.image_shape == (512, 512)
    assert load_run(run, 0.2).pixel_size_um == 0.2
    meta = json.loads((run / "run.json").read_text())
    for key, value, match in (("task", "panoptic", "task"), ("image_shape", [512], "image_shape"),
                              ("pixel_size_um", -1, "pixel")):
        (run / "run.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(InputError, match=match):
            load_run(run)
    (run / "run.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_run(run)
    (run / "run.json").write_text(json.dumps(meta))
    (run / "summary.csv").write_text("factor,iou_mean\nds3,0.5\n")
    with pytest.raises(InputError, match="power of two"):
        load_run(run)
    (run / "summary.csv").unlink()
    with pytest.raises(InputError, match="summary.csv is missing"):
        load_run(run)


def test_measured_inference_gain_is_reported_against_the_pixel_count():
    per = per_image_table({**MEANS, "ds4": 0.81})
    summary = summary_table(per)
    summary["inference_s_per_image"] = [0.16 / s ** 2 * 1.1 for s in summary["scale"]]
    gain = select_factor(summary, per).gains["inference_speed"]
    assert gain["ratio"] == pytest.approx(16.0) and gain["expected"] == pytest.approx(16.0)
    assert "warm" in gain["basis"] and "16x" in gain["basis"]


def test_gains_are_stated_against_the_finest_finished_factor_when_og_failed():
    per = per_image_table({**MEANS, "ds4": 0.81})
    per = per[per["factor"] != "og"]
    summary = summary_table(per)
    summary = pd.concat([summary, pd.DataFrame([{"factor": "og", "status": "failed", "failed_stage": "train"}])])
    sel = select_factor(summary, per)
    assert sel.baseline == "up2" and sel.failed == {"og": "train"}
    assert sel.caveat.startswith("The original sampling (og) failed during training")
    assert sel.statement.startswith("The original sampling (og) failed during training")
    assert sel.gains["objects_per_fov"]["ratio"] == pytest.approx(sel.scale ** 2 / 0.25)
    text = select_format(sel)
    assert text.startswith("NOTE: The original sampling (og) failed") and "Gains against up2:" in text


def test_a_ranking_of_untrained_models_says_it_cannot_be_trusted():
    per = per_image_table({f: 0.03 + 0.001 * i for i, f in enumerate(MEANS)})
    sel = select_factor(summary_table(per), per)
    assert sel.caveat.startswith("The best mean IoU is only 0.0") and "train longer" in sel.caveat
    assert sel.statement.startswith("The best mean IoU is only")


def test_one_test_image_gives_no_interval_and_says_so():
    per = per_image_table({**MEANS, "ds4": 0.81})
    one = per[per["image"] == per["image"].iloc[0]]
    sel = select_factor(summary_table(one), one)
    assert "Only one test image was evaluated" in sel.caveat
    assert "95% CI" not in sel.reason
