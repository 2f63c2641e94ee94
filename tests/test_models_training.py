"""Training runs on tiny networks: the model folder, determinism, atomicity, bad input, prediction."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from skimage.draw import disk

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.models import load_model, make_config, train_model
from rescale4dl_bmz.models.config import TrainConfig

TINY_UNET = {"architecture": {"kind": "unet", "base_filters": 4}, "patch_size": 32, "batch_size": 2,
             "learning_rate": 1e-3}
TINY_STARDIST = {"architecture": {"kind": "stardist", "base_filters": 4, "depth": 2, "n_rays": 8,
                                  "conv_after_unet": 8}, "patch_size": 32, "batch_size": 2}


def blobs(n: int, size: int = 64, seed: int = 0, objects: int = 6, radius: tuple[int, int] = (3, 6),
          margin: int = 6):
    """Bright disks (`objects` per image, radius in [radius), centres `margin` px from the border) on a
    noisy background, and their instance labels."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        mask = np.zeros((size, size), np.uint16)
        for label in range(1, objects + 1):
            rr, cc = disk(rng.integers(margin, size - margin, 2), rng.integers(*radius), shape=mask.shape)
            mask[rr, cc] = label
        images.append((400 * (mask > 0) + rng.normal(100, 20, mask.shape)).astype(np.uint16))
        masks.append(mask)
    return images, masks


@pytest.fixture(scope="module")
def data():
    return blobs(4)


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory, data):
    """A 5-step U-Net run (2 steps per epoch -> 3 epochs) with a progress hook."""
    out = tmp_path_factory.mktemp("runs") / "unet"
    seen = []
    cfg = make_config("semantic", steps=5, steps_per_epoch=2, factor="ds2", pixel_size_um=0.2, **TINY_UNET)
    result = train_model(*data, cfg, out, progress=seen.append)
    return result, seen


def test_unet_model_folder(unet_run):
    result, seen = unet_run
    folder = result.folder
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "cost.json", "model.keras",
                                                       "receptive_field.json", "split.json", "training_log.csv"]
    config = TrainConfig.model_validate(json.loads((folder / "config.json").read_text()))
    assert config == result.config and config.task == "semantic" and config.factor == "ds2"
    assert (config.patch_size, config.steps_per_epoch, config.pixel_size_um, config.seed) == (32, 2, 0.2, 0)
    assert config.normalization.low == 1.0 and config.normalization.high == 99.8
    assert config.deterministic is not None  # resolved: on without a GPU

    rows = list(csv.DictReader((folder / "training_log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and [int(r["steps"]) for r in rows] == [2, 4, 5]
    assert all(np.isfinite(float(r["loss"])) and np.isfinite(float(r["val_loss"])) for r in rows)
    assert [s["epoch"] for s in seen] == [1, 2, 3] and seen[-1]["epochs"] == 3

    cost = json.loads((folder / "cost.json").read_text())
    assert (cost["steps"], cost["epochs"]) == (5, 3)
    assert cost["pixels_seen"] == 5 * 2 * 32 * 32 and cost["wall_time_s"] > 0

    rf = json.loads((folder / "receptive_field.json").read_text())
    assert rf["analytic_px"] == 49 and rf["empirical_px"] == 49 and rf["analytic_um"] == pytest.approx(49 * 0.2)

    split = json.loads((folder / "split.json").read_text())
    assert split["n_val"] >= 1 and not set(split["train"]) & set(split["validation"])


def test_unet_saved_network_and_prediction(unet_run, data):
    model = load_model(unet_run[0].folder)
    assert model.task == "semantic" and model.config == unet_run[0].config
    net = model.keras_model
    assert net.input_shape == (None, None, None, 1) and net.output_shape == (None, None, None, 3)
    image = data[0][0]
    probs = model.predict_probabilities(image)
    assert probs.shape == (64, 64, 3) and np.allclose(probs.sum(-1), 1, atol=1e-5)
    # the saved network takes the normalised image
    direct = net.predict_on_batch(model.normalize(image)[None, ..., None])[0]
    np.testing.assert_allclose(probs, direct, atol=1e-5)
    labels = model.predict(image[:50, :37])  # any size: padded to the pooling grid and cropped back
    assert labels.dtype == np.uint8 and labels.shape == (50, 37) and set(np.unique(labels)) <= {0, 1, 2}
    with pytest.raises(InputError, match="StarDist"):
        model.stardist


def test_tiled_prediction_matches_whole_image(unet_run):
    from rescale4dl_bmz.models.prediction import predict_tiled

    model = load_model(unet_run[0].folder)
    image = np.random.default_rng(1).normal(size=(150, 230)).astype(np.float32)
    overlap = model.overlap_px  # twice the farthest reach of the measured receptive field
    assert overlap == 54
    whole = predict_tiled(model.keras_model.predict_on_batch, image, 4, tile=1024, overlap=overlap)
    for tile in (112, 128):
        tiled = predict_tiled(model.keras_model.predict_on_batch, image, 4, tile=tile, overlap=overlap)
        assert tiled.shape == (150, 230, 3)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # too little overlap: outputs near tile borders lack context and differ
    short = predict_tiled(model.keras_model.predict_on_batch, image, 4, tile=112, overlap=8)
    assert np.abs(short - whole).max() > 1e-3


def test_rerun_gives_the_same_weights(tmp_path, data):
    cfg = make_config("semantic", steps=3, **TINY_UNET)
    weights = []
    for name, c in (("a", cfg), ("b", cfg), ("c", cfg.model_copy(update={"seed": 1}))):
        train_model(*data, c, tmp_path / name)
        weights.append(load_model(tmp_path / name).keras_model.get_weights())
    assert all(np.array_equal(x, y) for x, y in zip(weights[0], weights[1]))
    assert not all(np.array_equal(x, y) for x, y in zip(weights[0], weights[2]))


def test_interrupted_training_leaves_nothing(tmp_path, data):
    def stop(record):
        raise KeyboardInterrupt

    cfg = make_config("semantic", steps=4, steps_per_epoch=2, **TINY_UNET)
    with pytest.raises(KeyboardInterrupt):
        train_model(*data, cfg, tmp_path / "model", progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_refused_unless_overwritten_semantic_masks_given(tmp_path, data):
    from rescale4dl_bmz.data.labels import instance_to_semantic

    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    semantic = [instance_to_semantic(m) for m in data[1]]
    cfg = make_config("semantic", steps=1, masks_are_semantic=True, **TINY_UNET)
    with pytest.raises(InputError, match="not empty"):
        train_model(data[0], semantic, cfg, out)
    result = train_model(data[0], semantic, cfg, out, overwrite=True)
    assert (out / "model.keras").is_file() and not (out / "keep.txt").exists()
    assert result.cost["steps"] == 1 and result.config.masks_are_semantic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("case, words", [
    ("no objects", "no objects"),
    ("too small for patch", "larger than the smallest image side"),
    ("too small for split", "too small for a validation split"),
    ("semantic values", "not a semantic label"),
    ("shape mismatch", "differs from its image"),
    ("float mask", "integers"),
    ("3D image", "2D"),
    ("no images", "no training images"),
])
def test_bad_input_is_refused_before_training(tmp_path, data, case, words):
    images, masks = list(data[0]), list(data[1])
    options = dict(TINY_UNET, steps=1)
    if case == "no objects":
        masks = [np.zeros_like(m) for m in masks]
    elif case == "too small for patch":
        options["patch_size"] = 128
    elif case == "too small for split":
        images, masks, options["patch_size"] = images[:1], masks[:1], 64
    elif case == "semantic values":
        options["masks_are_semantic"] = True
    elif case == "shape mismatch":
        masks[1] = masks[1][:50]
    elif case == "float mask":
        masks[0] = masks[0].astype(np.float32)
    elif case == "3D image":
        images[0] = np.stack([images[0]] * 2)
    elif case == "no images":
        images, masks = [], []
    with pytest.raises(InputError, match=words):
        train_model(images, masks, make_config("semantic", **options), tmp_path / "model")
    assert not list(tmp_path.iterdir())


def test_stardist_model_folder_and_prediction(tmp_path, data):
    cfg = make_config("instance", steps=3, **TINY_STARDIST)
    result = train_model(*data, cfg, tmp_path / "sd")
    folder = result.folder
    assert {"config.json", "cost.json", "receptive_field.json", "training_log.csv", "split.json", "stardist"} == {
        p.name for p in folder.iterdir()}
    assert {"config.json", "weights_best.h5", "thresholds.json"} <= {p.name for p in (folder / "stardist").iterdir()}
    thresholds = json.loads((folder / "stardist" / "thresholds.json").read_text())
    assert thresholds == pytest.approx(result.thresholds) and set(thresholds) == {"prob", "nms"}
    rf = result.receptive_field
    assert rf["analytic_px"] == rf["empirical_px"] and rf["stardist_estimate_px"] > 0
    model = load_model(folder)
    assert model.task == "instance" and model.thresholds == pytest.approx(thresholds)
    assert model.keras_model is model.stardist.keras_model
    labels = model.predict(data[0][0][:48, :40])
    assert labels.shape == (48, 40) and np.issubdtype(labels.dtype, np.unsignedinteger)
    with pytest.raises(InputError, match="semantic"):
        model.predict_probabilities(data[0][0])
    # a rerun gives the same StarDist model
    again = train_model(*data, cfg, tmp_path / "sd2")
    assert again.thresholds == result.thresholds
    weights = load_model(again.folder).keras_model.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(weights, model.keras_model.get_weights()))


def test_load_model_refuses_other_folders(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(InputError, match="config.json is missing"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"task": "semantic"}))
    with pytest.raises(InputError, match="model.keras is missing"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot be read"):
        load_model(tmp_path)


def test_plateau_reduces_learning_rate_and_stops_early(tmp_path, data):
    # a learning rate far below float32 resolution: the validation loss never improves
    cfg = make_config("semantic", epochs=10, steps_per_epoch=1, learning_rate=1e-12, reduce_lr_patience=1, min_learning_rate=0,
                      early_stopping_patience=2, **{k: v for k, v in TINY_UNET.items() if k != "learning_rate"})
    result = train_model(*data, cfg, tmp_path / "m")
    rates = [row["learning_rate"] for row in result.history]
    assert len(result.history) == 3 and result.cost["epochs"] == 3  # epoch 1, then 2 without improvement
    assert rates[0] == pytest.approx(1e-12) and rates[-1] == pytest.approx(0.25e-12)
