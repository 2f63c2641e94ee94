"""U-Net architecture, training configuration, patch rule, split, normalisation, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.models.augment import augment_pair, batch_stream
from rescale4dl_bmz.models.config import Augmentation, TrainConfig, make_config
from rescale4dl_bmz.models.normalize import percentile_normalize
from rescale4dl_bmz.models.patches import auto_min_foreground, grid_origins, patch_size_for_factor, split_data
from rescale4dl_bmz.models.training import resolve_patch_size

# ----------------------------------------------------------------------------- architecture


@pytest.fixture(scope="module")
def paper_unet():
    from rescale4dl_bmz.models.unet import build_unet

    return build_unet()  # depth 2, 64 base filters, 3 labels: the paper's network


def _convs(model):
    return {layer.name: layer for layer in model.layers if type(layer).__name__ == "Conv2D"}


def test_paper_unet_layers(paper_unet):
    convs = _convs(paper_unet)
    assert [convs[f"enc{k}_conv1"].filters for k in range(3)] == [64, 128, 256]
    assert all(convs[f"enc{k}_conv2"].kernel_size == (3, 3) for k in range(3))
    assert convs["dec1_upconv"].kernel_size == (2, 2) and convs["dec1_upconv"].filters == 128
    # the last decoder stage and the 3x3 conv to the labels are linear, the rest ReLU
    for name in ("dec0_upconv", "dec0_conv1", "dec0_conv2", "logits_conv"):
        assert convs[name].activation.__name__ == "linear", name
    for name in ("enc0_conv1", "enc2_conv2", "dec1_upconv", "dec1_conv2"):
        assert convs[name].activation.__name__ == "relu", name
    assert convs["logits_conv"].kernel_size == (3, 3) and convs["logits_conv"].filters == 3
    assert convs["softmax"].kernel_size == (1, 1) and convs["softmax"].activation.__name__ == "softmax"
    assert not [layer for layer in paper_unet.layers if "Dropout" in type(layer).__name__]
    assert paper_unet.input_shape == (None, None, None, 1)
    assert paper_unet.output_shape == (None, None, None, 3)


def test_dropout_only_on_512_and_1024_filter_levels():
    from rescale4dl_bmz.models.unet import build_unet

    model = build_unet(depth=4, base_filters=64)
    drops = sorted(layer.name for layer in model.layers if type(layer).__name__ == "Dropout")
    assert drops == ["enc3_dropout", "enc4_dropout"]
    convs = _convs(model)
    assert convs["enc3_conv2"].filters == 512 and convs["enc4_conv2"].filters == 1024


def test_unet_output_is_a_softmax_of_the_input_size():
    from rescale4dl_bmz.models.unet import build_unet

    model = build_unet(depth=3, base_filters=2, n_labels=4)
    x = np.random.default_rng(0).normal(size=(2, 40, 24, 1)).astype(np.float32)
    y = model.predict_on_batch(x)
    assert y.shape == (2, 40, 24, 4)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------- configuration


def test_config_defaults_follow_the_task_and_the_paper():
    sem = make_config("semantic").with_defaults()
    assert sem.architecture.kind == "unet" and sem.architecture.depth == 2 and sem.architecture.base_filters == 64
    assert (sem.batch_size, sem.learning_rate, sem.epochs, sem.validation_fraction) == (5, 1e-4, 1000, 0.1)
    assert sem.min_foreground_fraction == "auto" and sem.divisor == 4
    inst = make_config("instance").with_defaults()
    arch = inst.architecture
    assert (arch.kind, arch.n_rays, arch.grid, arch.depth, arch.base_filters) == ("stardist", 32, 2, 3, 32)
    assert (inst.batch_size, inst.learning_rate) == (2, 3e-4) and inst.divisor == 16
    assert (inst.normalization.low, inst.normalization.high) == (1.0, 99.8)


@pytest.mark.parametrize("options, words", [
    ({"steps": 0}, "steps"),
    ({"epochs": 0}, "epochs"),
    ({"steps": 10, "epochs": 10}, "not both"),
    ({"patch_size": 30}, "divisible by 4"),
    ({"architecture": {"kind": "stardist"}}, "unet"),
    ({"factor": "ds3"}, "power of two"),
    ({"colour": "blue"}, "colour"),
    ({"architecture": {"kind": "unet", "n_labels": 4}}, "n_labels must be 3"),
    ({"normalization": {"low": 99, "high": 1}}, "below high"),
])
def test_invalid_configurations_are_input_errors(options, words):
    with pytest.raises(InputError, match=words):
        make_config("semantic", **options)


def test_config_round_trips_through_json():
    cfg = make_config("instance", factor="2", pixel_size_um=0.16, architecture={"kind": "stardist", "grid": 1})
    assert cfg.factor == "ds2"
    again = TrainConfig.model_validate_json(cfg.model_dump_json())
    assert again == cfg


# ----------------------------------------------------------------------------- patch size rule


@pytest.mark.parametrize("scale, expected", [(0.25, 512), (0.5, 512), (1, 512), (2, 256), (4, 128), (8, 64), (16, 32)])
def test_unet_patch_size_per_factor_is_the_papers(scale, expected):
    # images large enough at every factor (2048 px at og)
    assert patch_size_for_factor(scale, 512, 512, int(2048 / scale), 4) == expected


@pytest.mark.parametrize("scale, side, expected", [(1, 2430, 2048), (2, 1215, 1024), (4, 607, 512),
                                                    (8, 303, 256), (16, 151, 128)])
def test_stardist_patch_keeps_the_field_of_view(scale, side, expected):
    # the paper's S. aureus image sizes; the patch covers 2048 og pixels at every factor
    p = patch_size_for_factor(scale, 2048, 2048, side, 16, margin_steps=1)
    assert p == expected and p % 16 == 0 and p <= side - 16


def test_patch_never_larger_than_the_image_and_divisible():
    for side in range(40, 700, 37):
        for depth in (1, 2, 3, 4):
            d = 2 ** depth
            p = patch_size_for_factor(1, 512, 512, side, d)
            assert p % d == 0 and p <= side
            assert p == min(512, side // d * d)  # the largest that fits, up to the rule's 512


def test_resolve_patch_size_errors():
    cfg = make_config("semantic", patch_size=256).with_defaults()
    with pytest.raises(InputError, match="larger than the smallest image side"):
        resolve_patch_size(cfg, 200)
    cfg = make_config("semantic", factor="ds16").with_defaults()
    assert resolve_patch_size(cfg, 100) == 32
    with pytest.raises(InputError, match="too small"):
        resolve_patch_size(cfg, 6)


# ----------------------------------------------------------------------------- split


def _dataset(n, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.normal(size=(size, size)).astype(np.float32) for _ in range(n)]
    labels = [np.zeros((size, size), np.uint8) for _ in range(n)]
    for lab in labels:
        lab[10:30, 10:30] = 1
    return images, labels


def test_split_by_image_is_seeded_and_disjoint():
    images, labels = _dataset(20)
    a = split_data(images, labels, 32, fraction=0.1, seed=1, min_fg=0.05, whole_images=False)
    b = split_data(images, labels, 32, fraction=0.1, seed=1, min_fg=0.05, whole_images=False)
    c = split_data(images, labels, 32, fraction=0.1, seed=2, min_fg=0.05, whole_images=False)
    assert a.unit == "image" and a.val_ids == b.val_ids and a.val_ids != c.val_ids
    val_images = {i.split("@")[0] for i in a.val_ids}
    train_images = {i.split("@")[0] for i in a.train_ids}
    assert len(val_images) == 2 and not val_images & train_images
    # only the top-left patch of each image has >= 5 % foreground
    assert len(a.train_x) == 18 and a.n_rejected == 20 * 3
    whole = split_data(images, labels, 32, fraction=0.1, seed=1, min_fg=0.05, whole_images=True)
    assert len(whole.train_x) == 18 and whole.train_x[0].shape == (64, 64)


def test_split_by_patch_for_few_images_and_errors():
    images, labels = _dataset(2)
    for lab in labels:
        lab[:] = 1
    s = split_data(images, labels, 16, fraction=0.1, seed=0, min_fg=0.05, whole_images=False)
    assert s.unit == "patch" and len(s.val_x) == 3 and len(s.train_x) == 29
    assert all(x.shape == (16, 16) for x in s.train_x)
    with pytest.raises(InputError, match="too small for a validation split"):
        split_data(images[:1], labels[:1], 64, fraction=0.1, seed=0, min_fg=0.05, whole_images=False)
    empty = [np.zeros_like(lab) for lab in labels]
    with pytest.raises(InputError, match="foreground"):
        split_data(images, empty, 16, fraction=0.1, seed=0, min_fg=0.05, whole_images=False)


def test_sparse_real_data_trains_with_the_adaptive_threshold(shared_data):
    """E. coli fields hold a few cells (about 4 % foreground): the paper's fixed 5 % rejected every
    whole-image patch; the adaptive rule keeps the images with cells and drops the empty ones."""
    from rescale4dl_bmz.files.images import read_mask
    from rescale4dl_bmz.models.patches import auto_min_foreground

    folder = shared_data / "ecoli_colicoords" / "masks"
    files = sorted(folder.glob("*.tif"))
    masks = [read_mask(f) for f in files]
    names = [f.stem for f in files]
    images = [m.astype(np.float32) for m in masks]
    share = sum(np.count_nonzero(m) for m in masks) / sum(m.size for m in masks)
    assert share < 0.05
    with pytest.raises(InputError) as err:
        split_data(images, masks, 512, fraction=0.1, seed=0, min_fg=0.05, whole_images=False, names=names)
    assert names[0] in str(err.value)  # the refusal names the files
    threshold = auto_min_foreground(masks)
    assert threshold == pytest.approx(share / 2)
    split = split_data(images, masks, 512, fraction=0.1, seed=0, min_fg=threshold, whole_images=False, names=names)
    kept = {i.split("@")[0] for i in split.train_ids + split.val_ids}
    empty = {n for n, m in zip(names, masks) if not m.any()}
    assert kept and not kept & empty and set(split.skipped_images) >= empty
    assert len(split.val_x) >= 1 and len(split.train_x) >= 1


def test_dense_data_keeps_the_papers_threshold():
    _, labels = _dataset(4)
    for lab in labels:
        lab[:] = 1
    assert auto_min_foreground(labels) == 0.05


def test_grid_origins():
    assert grid_origins((70, 40), 32) == [(0, 0), (32, 0)]


# ----------------------------------------------------------------------------- normalisation, augmentation


def test_percentile_normalisation():
    x = np.arange(1000, dtype=np.uint16).reshape(25, 40)
    y = percentile_normalize(x, 1, 99.8)
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.percentile(y, [1, 99.8]), [0, 1], atol=1e-5)
    assert not np.any(percentile_normalize(np.full((5, 5), 7)))
    with pytest.raises(InputError, match="NaN"):
        percentile_normalize(np.full((5, 5), np.nan))
    with pytest.raises(InputError, match="2D"):
        percentile_normalize(np.zeros((2, 5, 5)))


def test_augmentation_moves_image_and_labels_together():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, (16, 16)).astype(np.uint8)
    geometric = Augmentation(intensity_scale=(1, 1), noise_std=0)
    seen = set()
    for _ in range(40):
        xa, ya = augment_pair(y.astype(np.float32), y, rng, geometric)
        np.testing.assert_array_equal(xa, ya)
        seen.add(ya.tobytes())
    assert len(seen) == 8  # the 8 flips/rotations of a square
    xa, ya = augment_pair(y.astype(np.float32) + 1, y, rng, Augmentation(noise_std=0))
    ratio = xa / (ya + 1)
    assert 0.8 <= ratio.min() and np.ptp(ratio) < 1e-5  # one intensity scale per patch
    xa, _ = augment_pair(np.zeros((16, 16), np.float32), y, rng, Augmentation(noise_std=0.5))
    assert xa.std() > 0  # noise
    xa, ya = augment_pair(y.astype(np.float32), y, rng, Augmentation(enabled=False))
    np.testing.assert_array_equal(ya, y)


def test_batch_stream_is_seeded_and_visits_every_patch():
    x = np.arange(7 * 4 * 4, dtype=np.float32).reshape(7, 4, 4)
    y = np.arange(7)[:, None, None].repeat(4, 1).repeat(4, 2)
    off = Augmentation(enabled=False)
    a, b = batch_stream(x, y, 3, 5, off), batch_stream(x, y, 3, 5, off)
    first = [next(a) for _ in range(7)]
    second = [next(b) for _ in range(7)]
    for (xa, ya), (xb, yb) in zip(first, second):
        np.testing.assert_array_equal(xa, xb)
        assert xa.shape == (3, 4, 4, 1) and ya.dtype == np.int32
    ids = np.concatenate([yb[:, 0, 0] for _, yb in first])  # 21 = 3 full passes over 7 patches
    assert all(sorted(ids[k:k + 7]) == list(range(7)) for k in (0, 7, 14))
