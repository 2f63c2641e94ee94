"""`rescale4dl train` and `rescale4dl predict` end to end, on small real crops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.files.images import read_pixel_size, write_tiff


@pytest.fixture(scope="module")
def crops(shared_data, tmp_path_factory):
    """Four 64x64 crops of the S. aureus image (with its calibration) and their masks."""
    src = shared_data / "saureus_crop"
    image = tifffile.imread(src / "images" / "1.tif")
    mask = tifffile.imread(src / "masks" / "1.tif")
    pixel = read_pixel_size(src / "images" / "1.tif")
    root = tmp_path_factory.mktemp("crops")
    for i, (r, c) in enumerate([(0, 0), (0, 64), (64, 0), (64, 64)]):
        write_tiff(root / "images" / f"c{i}.tif", image[r:r + 64, c:c + 64], pixel)
        write_tiff(root / "masks" / f"c{i}.tif", mask[r:r + 64, c:c + 64])
    (root / "train.yaml").write_text("architecture:\n  kind: unet\n  base_filters: 4\nbatch_size: 2\n"
                                     "learning_rate: 0.001\n")
    return root, pixel


@pytest.fixture(scope="module")
def semantic_model(crops):
    root, _ = crops
    out = root / "runs" / "sem"
    code = main(["train", str(root / "images"), str(root / "masks"), "--task", "semantic", "--out", str(out),
                 "--steps", "2", "--patch-size", "32", "--config", str(root / "train.yaml"), "--seed", "3"])
    assert code == 0
    return out


def test_train_command_writes_a_model(semantic_model, crops):
    config = json.loads((semantic_model / "config.json").read_text())
    assert config["task"] == "semantic" and config["steps"] == 2 and config["seed"] == 3
    assert config["architecture"]["base_filters"] == 4 and config["patch_size"] == 32
    assert config["pixel_size_um"] == pytest.approx(crops[1])  # read from the files
    assert json.loads((semantic_model / "cost.json").read_text())["steps"] == 2


def test_predict_command_writes_one_tiff_per_image(semantic_model, crops, tmp_path, capsys):
    root, pixel = crops
    out = tmp_path / "pred"
    assert main(["predict", str(semantic_model), str(root / "images"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["c0.tif", "c1.tif", "c2.tif", "c3.tif"]
    pred = tifffile.imread(out / "c0.tif")
    assert pred.dtype == np.uint8 and pred.shape == (64, 64) and set(np.unique(pred)) <= {0, 1, 2}
    assert read_pixel_size(out / "c0.tif") == pytest.approx(pixel)
    assert "4 prediction(s)" in capsys.readouterr().out


def test_instance_train_and_predict(crops, tmp_path):
    root, _ = crops
    model = tmp_path / "inst"
    assert main(["train", str(root / "images"), str(root / "masks"), "--task", "instance", "--out", str(model),
                 "--steps", "2", "--patch-size", "32", "--depth", "1", "--base-filters", "4", "--n-rays", "8",
                 "--grid", "1", "--batch-size", "2"]) == 0
    assert (model / "stardist" / "thresholds.json").is_file()
    out = tmp_path / "pred"
    assert main(["predict", str(model), str(root / "images"), "--out", str(out), "--tile-size", "32"]) == 0
    pred = tifffile.imread(out / "c2.tif")
    assert pred.shape == (64, 64) and np.issubdtype(pred.dtype, np.unsignedinteger)


@pytest.mark.parametrize("extra, words", [
    (["--steps", "0"], "steps"),
    (["--epochs", "0"], "epochs"),
    (["--steps", "1", "--patch-size", "128"], "larger than the smallest image side"),
    (["--steps", "1", "--masks-are-semantic", "--patch-size", "32"], "not a semantic label"),
    (["--steps", "1", "--factor", "ds3"], "power of two"),
])
def test_train_command_bad_input_exits_2(crops, tmp_path, capsys, extra, words):
    root, _ = crops
    out = tmp_path / "m"
    code = main(["train", str(root / "images"), str(root / "masks"), "--task", "semantic", "--out", str(out),
                 "--config", str(root / "train.yaml"), *extra])
    assert code == 2 and words in capsys.readouterr().err
    assert not out.exists()


def test_train_command_refuses_out_inside_inputs_and_empty_masks(crops, tmp_path, capsys):
    root, _ = crops
    assert main(["train", str(root / "images"), str(root / "masks"), "--task", "semantic",
                 "--out", str(root / "images" / "m"), "--steps", "1"]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    for i in range(4):
        write_tiff(empty / f"c{i}.tif", np.zeros((64, 64), np.uint8))
    assert main(["train", str(root / "images"), str(empty), "--task", "instance",
                 "--out", str(tmp_path / "m"), "--steps", "1"]) == 2
    assert "no objects" in capsys.readouterr().err


def test_predict_command_bad_input_exits_2(semantic_model, crops, tmp_path, capsys):
    root, _ = crops
    (tmp_path / "not_a_model").mkdir()
    assert main(["predict", str(tmp_path / "not_a_model"), str(root / "images"), "--out", str(tmp_path / "p")]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(root / "images"), "--out", str(tmp_path / "p")]) == 2
    assert "inside the input folder" in capsys.readouterr().err  # never write into the model folder
    assert main(["predict", str(semantic_model), str(tmp_path / "nowhere"), "--out", str(tmp_path / "p")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", str(semantic_model), str(root / "images"), "--out", str(root / "images" / "p")]) == 2
    assert "inside the input folder" in capsys.readouterr().err


def test_inference_is_timed_warm():
    """The first call on a fresh Keras model includes tracing; the sweep's timing excludes it."""
    import time

    import numpy as np

    from rescale4dl_bmz.models.unet import build_unet
    from rescale4dl_bmz.models.prediction import warm_inference_seconds

    model = build_unet(depth=2, base_filters=4)
    image = np.zeros((1, 64, 64, 1), np.float32)
    t0 = time.perf_counter()
    model.predict_on_batch(image)  # traces
    first = time.perf_counter() - t0
    calls = []
    warm = warm_inference_seconds(lambda x: calls.append(model.predict_on_batch(x)), image, repeats=5)
    assert len(calls) == 5 and 0 < warm < first
