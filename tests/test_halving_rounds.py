"""Training in rounds (`models.rounds`): a factor that never stops gets exactly what an exhaustive
training gives it, and a factor clearly behind on validation stops without a model folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rescale4dl_bmz.models import load_model, make_config, train_model
from rescale4dl_bmz.decide.halving import halving_rule
from rescale4dl_bmz.models.rounds import FactorRun, train_in_rounds
from test_models_training import TINY_STARDIST, TINY_UNET, blobs


@pytest.fixture(scope="module")
def data():
    return blobs(4)


def big_blobs(n: int):
    """Four large bright disks per image: a U-Net with 8 filters learns them in a few steps."""
    return blobs(n, objects=4, radius=(8, 12), margin=10)


def _blank(data):
    """The same images with the objects gone from the images: nothing to learn from the pixels."""
    images, masks = data
    rng = np.random.default_rng(1)
    return [rng.normal(100, 20, im.shape).astype(np.uint16) for im in images], masks


def test_unet_rounds_match_exhaustive_steps_and_folder(tmp_path, data):
    cfg = make_config("semantic", steps=8, steps_per_epoch=2, factor="og", **TINY_UNET)
    alone = train_model(*data, cfg, tmp_path / "exhaustive")
    result = train_in_rounds([FactorRun("og", *data, cfg, tmp_path / "rounds")], 3, *halving_rule(3, 0.05))
    record = result["factors"]["og"]
    assert record["status"] == "done" and record["stopped_after_round"] is None
    assert record["steps"] == alone.cost["steps"] == 8
    assert record["round_steps"] == [2, 4, 8] and len(record["scores"]) == 3
    assert all(0 <= s <= 1 for s in record["scores"])
    names = sorted(p.name for p in (tmp_path / "rounds").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "exhaustive").iterdir())
    cost = json.loads((tmp_path / "rounds" / "cost.json").read_text())
    assert cost["steps"] == 8 and cost["epochs"] == alone.cost["epochs"] and cost["schedule"] == "halving"
    rows = (tmp_path / "rounds" / "training_log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4]  # epochs keep counting across rounds
    assert load_model(tmp_path / "rounds").predict(data[0][0]).shape == data[0][0].shape


def test_a_factor_clearly_behind_stops(tmp_path):
    data = big_blobs(4)
    cfg = make_config("semantic", steps=12, steps_per_epoch=3, factor="og", learning_rate=1e-2, patch_size=32,
                      batch_size=2, architecture={"kind": "unet", "base_filters": 8})
    runs = [FactorRun("og", *data, cfg, tmp_path / "og"),
            FactorRun("ds2", *_blank(data), cfg.model_copy(update={"factor": "ds2"}), tmp_path / "ds2")]
    result = train_in_rounds(runs, 2, *halving_rule(2, 0.05))
    og, ds2 = result["factors"]["og"], result["factors"]["ds2"]
    assert og["scores"][0] - ds2["scores"][0] > 0.05, result
    assert ds2["status"] == "stopped" and ds2["stopped_after_round"] == 1 and ds2["steps"] == 6
    assert og["status"] == "done" and og["steps"] == og["budget_steps"] == 12
    assert (tmp_path / "og" / "cost.json").is_file() and not (tmp_path / "ds2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_stardist_rounds_reach_the_full_budget(tmp_path, data):
    cfg = make_config("instance", steps=4, steps_per_epoch=1, factor="og", **TINY_STARDIST)
    alone = train_model(*data, cfg, tmp_path / "exhaustive")
    result = train_in_rounds([FactorRun("og", *data, cfg, tmp_path / "rounds")], 2, *halving_rule(2, 0.05))
    record = result["factors"]["og"]
    assert record["status"] == "done" and record["round_steps"] == [2, 4]
    assert record["steps"] == alone.cost["steps"] == 4
    assert "F1" in result["score"] and all(0 <= s <= 1 for s in record["scores"])
    assert (tmp_path / "rounds" / "stardist" / "thresholds.json").is_file()
    assert load_model(tmp_path / "rounds").predict(data[0][0]).shape == data[0][0].shape
