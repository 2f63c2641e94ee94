"""The sweep's stage functions on tiny synthetic data, without Prefect and without training: the
checks before any work, the done-markers, a stage's failure as `FactorFailed` with its log, and
the finish on hand-made outcomes. A trained model is stood in by a hand-written train marker and
a thresholding predictor, so the whole chain data -> predict -> evaluate -> finish runs in seconds."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pandas as pd
import pytest

from rescale4dl_bmz.errors import FactorFailed, InputError
from rescale4dl_bmz.files.text_files import read_csv
from rescale4dl_bmz.files.images import read_image, write_tiff
from rescale4dl_bmz.models.prediction import warm_inference_seconds
from rescale4dl_bmz.sweep import stages
from rescale4dl_bmz.sweep.config import make_sweep_config
from rescale4dl_bmz.sweep.finish import Outcome, finish, outcome_rows
from rescale4dl_bmz.sweep.markers import check_done, is_done, mark_done, marker_key, marker_path, read_done
from rescale4dl_bmz.sweep.plan import Plan, factor_dir
from rescale4dl_bmz.sweep.prepare import names_for_test, plan_sweep, split_names


NAMES = ("a", "b", "c", "d")


def disks(side: int, seed: int) -> np.ndarray:
    """An instance mask of a few non-touching disks (radius 5) at seeded places on a grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    mask = np.zeros((side, side), np.uint16)
    cells = [(r, c) for r in range(8, side - 7, 16) for c in range(8, side - 7, 16)]
    for label, k in enumerate(rng.choice(len(cells), size=min(5, len(cells)), replace=False), start=1):
        r, c = cells[k]
        mask[(yy - r) ** 2 + (xx - c) ** 2 <= 25] = label
    return mask


def write_dataset(root, side: int = 64, names=NAMES):
    """images/ and masks/ of bright disks on a dark background (the mask is the truth)."""
    for i, name in enumerate(names):
        mask = disks(side, seed=i)
        write_tiff(root / "images" / f"{name}.tif", ((mask > 0) * 200 + 10).astype(np.uint16))
        write_tiff(root / "masks" / f"{name}.tif", mask)
    return root / "images", root / "masks"


def sweep_config(tmp_path, **fields):
    images, masks = write_dataset(tmp_path / "data", side=fields.pop("side", 64))
    return make_sweep_config(images=images, masks=masks, out=tmp_path / "run", task="semantic",
                             factors=["og", "ds2"], test_images=["d"], pixel_size_um=0.1, **fields)


def tiny_plan(tmp_path, package=None) -> Plan:
    """A hand-made plan (no data behind it) for the bookkeeping tests."""
    return Plan(out=str(tmp_path), task="semantic", factors=["og"], run_factors=["og"], pruned={},
                pixel_size_um=None, crop_multiple=1, items=[], train=["a"], test=["b"], package=package)


# ----------------------------------------------------------------------------- checks before any work

def test_split_holds_out_a_seeded_fraction_or_the_named_images(tmp_path):
    config = sweep_config(tmp_path).model_copy(update={"test_images": None, "test_fraction": 0.25})
    names = [f"i{k}" for k in range(8)]
    train, test = split_names(names, config)
    assert len(test) == 2 and sorted(train + test) == sorted(names)
    assert split_names(names, config) == (train, test)  # seeded: the same split every time
    named = config.model_copy(update={"test_images": ["i3"]})
    assert split_names(names, named) == ([n for n in names if n != "i3"], ["i3"])
    assert names_for_test(names, config) == names  # a pretrained model tests on every image
    with pytest.raises(InputError, match="not among the images"):
        split_names(names, config.model_copy(update={"test_images": ["nope"]}))
    with pytest.raises(InputError, match="at least 2 images"):
        split_names(["only"], config)


def test_plan_checks_everything_before_writing_a_byte(tmp_path):
    config = sweep_config(tmp_path)
    plan, advice = plan_sweep(config)
    assert plan.train == ["a", "b", "c"] and plan.test == ["d"] and plan.run_factors == ["og", "ds2"]
    assert plan.image_shape == [64, 64] and plan.crop_multiple == 2 and plan.pixel_size_um == 0.1
    assert [a.factor for a in advice] == ["og", "ds2"]
    assert not config.out.exists()


def test_a_factor_whose_images_are_smaller_than_a_patch_is_refused_by_name(tmp_path):
    config = sweep_config(tmp_path, side=32).model_copy(update={"factors": ["og", "ds8"]})
    with pytest.raises(InputError, match=r"factor ds8 \(images 4 px\)"):
        plan_sweep(config)
    assert not config.out.exists()


def test_training_images_too_few_for_a_validation_split_are_refused(tmp_path):
    images, masks = write_dataset(tmp_path / "data", side=32, names=("a", "b"))
    config = make_sweep_config(images=images, masks=masks, out=tmp_path / "run", task="semantic", factors=["og"],
                               test_images=["b"])
    with pytest.raises(InputError, match="factor og: dataset too small for a validation split"):
        plan_sweep(config)


# ----------------------------------------------------------------------------- done-markers

def test_a_marker_holds_while_its_files_are_unchanged(tmp_path):
    plan = tiny_plan(tmp_path)
    out = factor_dir(plan, "og") / "images" / "a.tif"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"pixels")
    info = mark_done(plan, "og", "data", {"n_images": 1}, [out])
    assert info["files"] == {"images/a.tif": [6, out.stat().st_mtime_ns]}
    assert check_done(plan, "og", "data") == info == read_done(plan, "og", "data") and is_done(plan, "og", "data")
    assert marker_key(plan, "og", "data") == marker_key(plan, "og", "data")  # a stable Prefect cache key

    out.write_bytes(b"other pixels")  # the file the marker vouches for changed
    assert check_done(plan, "og", "data") is None
    assert marker_key(plan, "og", "data") != marker_key(plan, "og", "data")  # never a stale cache hit
    assert not is_done(plan, "og", "data") and not marker_path(plan, "og", "data").exists()  # dropped
    with pytest.raises(RuntimeError, match="not a valid done-marker"):
        read_done(plan, "og", "data")


def test_a_marker_falls_with_the_stage_it_built_on(tmp_path):
    plan = tiny_plan(tmp_path)
    mark_done(plan, "og", "data", {})
    mark_done(plan, "og", "train", {})
    assert is_done(plan, "og", "train")
    mark_done(plan, "og", "data", {"again": True})  # data redone: the model was trained on other data
    assert check_done(plan, "og", "data") is not None and check_done(plan, "og", "train") is None
    marker_path(plan, "og", "predict").write_text("{not json")
    assert check_done(plan, "og", "predict") is None


def test_with_a_pretrained_package_predict_builds_on_data(tmp_path):
    plan = tiny_plan(tmp_path, package={"name": "pretrained", "task": "semantic"})
    mark_done(plan, "og", "data", {})
    info = mark_done(plan, "og", "predict", {})
    assert "upstream" in info and check_done(plan, "og", "predict") is not None
    with pytest.raises(FileNotFoundError):  # without a package, predict needs a train marker
        mark_done(tiny_plan(tmp_path / "trained"), "og", "predict", {})


# ----------------------------------------------------------------------------- a stage's failure

def test_a_failing_stage_becomes_factor_failed_with_its_traceback_in_a_log(tmp_path):
    @stages.factor_stage("evaluate")
    def broken(config, plan, factor):
        raise ValueError("the prediction is empty\nsecond line")

    with pytest.raises(FactorFailed) as caught:
        broken(None, tiny_plan(tmp_path), "ds2")
    failure = caught.value
    assert (failure.factor, failure.stage) == ("ds2", "evaluate")
    assert failure.cause == "ValueError: the prediction is empty"
    log = tmp_path / "ds2" / "logs" / "evaluate.error.log"
    assert failure.log == str(log) and "Traceback" in log.read_text() and "second line" in log.read_text()
    outcome = Outcome("ds2")
    outcome.fail("evaluate", failure)
    assert outcome.status == "failed" and outcome.failure == failure.as_dict()


def test_a_training_failure_keeps_the_training_log_and_a_full_disk_stops_everything(tmp_path):
    from rescale4dl_bmz.sweep.tensorflow_worker import WorkerJobFailed

    @stages.factor_stage("train")
    def train(config, plan, factor):
        raise WorkerJobFailed("out of memory", "/run/og/logs/train.log")

    with pytest.raises(FactorFailed) as caught:
        train(None, tiny_plan(tmp_path), "og")
    assert (caught.value.cause, caught.value.log) == ("out of memory", "/run/og/logs/train.log")

    @stages.factor_stage("data")
    def full_disk(config, plan, factor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as caught:
        full_disk(None, tiny_plan(tmp_path), "og")
    assert not isinstance(caught.value, FactorFailed)
    assert not (tmp_path / "og" / "logs" / "data.error.log").exists()


def test_warm_inference_time_is_the_median_of_the_warm_calls():
    calls = []
    seconds = warm_inference_seconds(calls.append, np.zeros((4, 4)), repeats=5)
    assert len(calls) == 5 and seconds >= 0


# ----------------------------------------------------------------------------- the whole chain, no training

class ThresholdModel:
    """Stands in for a trained U-Net: bright pixels are cells, as 0/1/2 semantic labels."""

    def predict(self, image: np.ndarray) -> np.ndarray:
        from skimage.measure import label

        from rescale4dl_bmz.data.labels import instance_to_semantic

        return instance_to_semantic(label(image > 100).astype(np.uint16), "deepbacs")


def test_data_predict_evaluate_finish_on_tiny_data(tmp_path, monkeypatch):
    config = sweep_config(tmp_path, export=False)
    plan, _ = plan_sweep(config)
    def predict_files(config, plan, factor, sources, targets, pixel):
        for source, target in zip(sources, targets):
            write_tiff(target, ThresholdModel().predict(read_image(source)), pixel)
        return {"first_pass_s": 0.2, "warm_s": 0.1}

    monkeypatch.setattr(stages, "predict_files", predict_files)
    outcomes = []
    for factor in plan.run_factors:
        outcome = Outcome(factor)
        outcome.stages["data"] = stages.stage_data(config, plan, factor)
        assert stages.stage_data(config, plan, factor) == outcome.stages["data"]  # done: skipped
        outcome.stages["train"] = mark_done(plan, factor, "train", {"wall_time_s": 2.0, "steps": 10})
        outcome.stages["predict"] = stages.stage_predict(config, plan, factor)
        outcome.stages["evaluate"] = stages.stage_evaluate(config, plan, factor)
        outcome.status = "done"
        outcomes.append(outcome)
    root = factor_dir(plan, "ds2")
    assert sorted(p.name for p in (root / "labels").iterdir()) == [f"{n}.tif" for n in NAMES]
    assert outcomes[0].stages["evaluate"]["iou_native"] > 0.9  # the threshold finds the disks

    result = finish(config, plan, outcomes)
    assert result["chosen"] in ("og", "ds2") and result["n_done"] == 2 and not result["failed"]
    summary = read_csv(tmp_path / "run" / "summary.csv")
    assert set(summary["status"]) == {"done"} and set(summary["grid"]) == {"native", "sampled"}
    assert json.loads((tmp_path / "run" / "selection.json").read_text())["factor"] == result["chosen"]
    assert (tmp_path / "run" / "figures" / "examples.png").is_file()
    assert "Acquire your images at" in (tmp_path / "run" / "report.md").read_text(encoding="utf-8")


def test_finish_without_a_finished_factor_says_why_per_factor(tmp_path):
    plan = tiny_plan(tmp_path)
    plan.pruned = {"ds16": "objects 1.2 px wide: hopeless"}
    failed = Outcome("og")
    failed.fail("train", FactorFailed("og", "train", "out of memory", "/run/og/logs/train.log"))
    odd = Outcome("ds2")
    odd.fail("predict", RuntimeError("no GPU"))
    config = make_sweep_config(images=tmp_path / "i", masks=tmp_path / "m", out=tmp_path, task="semantic")
    result = finish(config, plan, [failed, odd])
    assert result["n_done"] == 0 and "chosen" not in result
    assert result["headline"].startswith("No recommendation: no factor finished.")
    assert "og failed during training: out of memory. Full log: /run/og/logs/train.log." in result["headline"]
    summary = read_csv(tmp_path / "summary.csv").set_index("factor")
    assert summary.loc["og", "failed_stage"] == "train" and summary.loc["ds2", "error"] == "RuntimeError: no GPU"
    assert summary.loc["ds16", "status"] == "pruned"


def test_outcome_rows_spread_the_inference_time_over_the_test_images(tmp_path):
    plan = tiny_plan(tmp_path)
    plan.test = ["b", "c"]
    done = Outcome("og", "done", stages={"predict": {"inference_s": 3.0}, "data": {"vanished_objects": 1}})
    row = outcome_rows(plan, [done])[0]
    assert row["inference_s_per_image"] == 1.5 and row["vanished_objects"] == 1 and row["status"] == "done"
    assert pd.isna(row["wall_time_s"])
