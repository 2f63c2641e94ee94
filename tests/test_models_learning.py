"""The networks learn on real data (real TensorFlow training, a few minutes on 2 CPU cores).

- U-Net (semantic): C. elegans wells at ds2, trained on 40 wells, tested on 8 held-out wells
  (A01–A04, B01–B04): binary IoU >= 0.6.
- StarDist (instance): S. aureus, trained on three quadrants, tested on the fourth:
  F1 >= 0.7 at IoU 0.5 (stardist.matching).
The `slow` variants train longer and expect more.
"""

from __future__ import annotations

import numpy as np
import pytest

from rescale4dl_bmz.files.images import read_image, read_mask
from rescale4dl_bmz.models import load_model, make_config, train_model

HELD_OUT = ("01", "02", "03", "04")


def _worms(shared_data, factor):
    from rescale4dl_bmz.data.rescale import rescale_image, rescale_mask

    root = shared_data / "celegans_bbbc010"
    names = sorted(p.stem for p in (root / "images").glob("*.tif"))
    assert len(names) == 48
    split = {"train": [n for n in names if n[1:] not in HELD_OUT], "test": [n for n in names if n[1:] in HELD_OUT]}
    out = {}
    for key, ns in split.items():
        out[key] = (ns, [rescale_image(read_image(root / "images" / f"{n}.tif"), factor) for n in ns],
                    [rescale_mask(read_mask(root / "masks" / f"{n}.tif"), factor) for n in ns])
    return out


def _binary_iou(model, images, masks) -> float:
    inter = union = 0
    for image, mask in zip(images, masks):
        pred, truth = model.predict(image) != 0, mask != 0
        inter += np.count_nonzero(pred & truth)
        union += np.count_nonzero(pred | truth)
    return inter / union


def _quadrants(a):
    h, w = a.shape[0] // 2, a.shape[1] // 2
    return [a[:h, :w], a[:h, w:], a[h:, :w], a[h:, w:]]


def _learn_worms(shared_data, tmp_path, steps, base_filters):
    data = _worms(shared_data, "ds2")
    names, images, masks = data["train"]
    # worms cover ~4 % of a well: keep patches with >= 2 % foreground
    cfg = make_config("semantic", factor="ds2", steps=steps, steps_per_epoch=25, patch_size=128, batch_size=4,
                      learning_rate=2e-3, min_foreground_fraction=0.02,
                      architecture={"kind": "unet", "base_filters": base_filters})
    result = train_model(images, masks, cfg, tmp_path / "worms", names=names)
    # whole wells are split for validation (4 of 40); the 8 test wells are never seen
    val_wells = {i.split("@")[0] for i in result.split["validation"]}
    train_wells = {i.split("@")[0] for i in result.split["train"]}
    assert result.split["unit"] == "image" and len(val_wells) == 4 and not val_wells & train_wells
    return _binary_iou(load_model(result.folder), *data["test"][1:])


def _learn_cocci(shared_data, tmp_path, steps, base_filters):
    from stardist.matching import matching

    root = shared_data / "saureus_crop"
    images = _quadrants(read_image(root / "images" / "1.tif"))
    masks = _quadrants(read_mask(root / "masks" / "1.tif"))
    cfg = make_config("instance", steps=steps, steps_per_epoch=25, patch_size=128, batch_size=4, learning_rate=3e-3,
                      architecture={"kind": "stardist", "base_filters": base_filters, "conv_after_unet": 64})
    result = train_model(images[:3], masks[:3], cfg, tmp_path / "cocci")
    assert 0 < result.thresholds["prob"] < 1
    pred = load_model(result.folder).predict(images[3])
    return matching(masks[3], pred, thresh=0.5).f1


def test_unet_learns_worms(shared_data, tmp_path):
    assert _learn_worms(shared_data, tmp_path, steps=150, base_filters=8) >= 0.6


def test_stardist_learns_cocci(shared_data, tmp_path):
    assert _learn_cocci(shared_data, tmp_path, steps=200, base_filters=16) >= 0.7


@pytest.mark.slow
def test_unet_learns_worms_longer(shared_data, tmp_path):
    assert _learn_worms(shared_data, tmp_path, steps=600, base_filters=16) >= 0.7


@pytest.mark.slow
def test_stardist_learns_cocci_longer(shared_data, tmp_path):
    assert _learn_cocci(shared_data, tmp_path, steps=600, base_filters=32) >= 0.85
