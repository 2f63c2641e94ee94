"""Receptive fields: the U-Net formula, layer arithmetic on built networks, and measurement."""

from __future__ import annotations

import pytest

from rescale4dl_bmz.decide.advise import STARDIST_RF_THEORETICAL, receptive_field
from rescale4dl_bmz.models.receptive_field import analytic_receptive_field, empirical_receptive_field
from rescale4dl_bmz.models.unet import analytic_unet_rf, build_unet


# the probes of the deepest networks take 15-50 s each on 2 CPU cores: tier e2e
_DEEP = [pytest.mark.e2e]


@pytest.mark.parametrize("depth", [1, 2, 3, pytest.param(4, marks=_DEEP), pytest.param(5, marks=_DEEP)])
def test_unet_formula_layer_arithmetic_and_measurement_agree(depth):
    """The closed formula (used by `advise` before any network exists) equals the field of the
    built U-Net, by layer arithmetic and by measurement."""
    model = build_unet(depth=depth, base_filters=4)
    analytic = analytic_receptive_field(model)
    assert analytic == analytic_unet_rf(depth) == receptive_field("unet", depth=depth).theoretical_px
    rf = empirical_receptive_field(model, phases=2 ** depth, divisor=2 ** depth, start=analytic + 4 * 2 ** depth)
    assert not rf["empirical_clipped"]
    # averaged over the 2^depth pooling phases the measured field is exactly the analytic one;
    # single output pixels see a little more or less (nearest upsampling + 2x2 conv)
    assert rf["empirical_px"] == analytic
    assert rf["empirical_min_px"] < analytic < rf["empirical_max_px"] <= analytic + 2 ** depth
    assert len(rf["empirical_extent_px"]) == 2 ** depth


def test_layer_arithmetic_on_a_plain_network():
    import keras

    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inp)                  # 3
    x = keras.layers.Conv2D(2, 5, padding="same", activation="relu")(x)  # 7
    x = keras.layers.MaxPooling2D(2)(x)                                   # 8, jump 2
    x = keras.layers.Conv2D(2, 3, padding="same", dilation_rate=2)(x)     # 8 + 4*2 = 16
    x = keras.layers.Dropout(0.3)(x)
    model = keras.Model(inp, keras.layers.Conv2D(1, 1)(x))
    assert analytic_receptive_field(model) == 16
    rf = empirical_receptive_field(model, phases=1, start=32)
    assert rf["empirical_px"] == rf["empirical_max_px"] == 16
    assert rf["probe_size_px"] == 32


def test_probe_grows_until_the_field_fits():
    model = build_unet(depth=3, base_filters=2)
    rf = empirical_receptive_field(model, phases=1, divisor=8, start=16)
    assert rf["probe_size_px"] >= 128 and not rf["empirical_clipped"]


def test_stardist_theoretical_fields():
    """`advise`'s StarDist fields (the default depth 3, grid 1 and 2) are those of the built
    network, and the measurement agrees."""
    from rescale4dl_bmz.models.config import make_config
    from rescale4dl_bmz.models.stardist_model import stardist_config, stardist_rf_estimate
    from stardist.models import StarDist2D

    found = {}
    for grid in sorted(STARDIST_RF_THEORETICAL):
        cfg = make_config("instance", architecture={"kind": "stardist", "grid": grid, "base_filters": 4,
                                                    "conv_after_unet": 8}).with_defaults()
        model = StarDist2D(stardist_config(cfg, 64, 1, 1), basedir=None)
        found[grid] = analytic_receptive_field(model.keras_model)
        if grid == 2:
            rf = empirical_receptive_field(model.keras_model, phases=8, divisor=cfg.divisor, start=found[grid] + 64)
            assert rf["empirical_px"] == found[grid]
            # StarDist's own impulse-response estimate sees a smaller, effective field
            assert 0 < stardist_rf_estimate(model) <= rf["empirical_max_px"]
    assert found == STARDIST_RF_THEORETICAL
    assert {g: receptive_field("stardist", grid=g).theoretical_px for g in found} == found


# every StarDist depth and grid the config accepts; the probe images of the widest fields (over
# 1000 px) take up to a minute each, so those run with -m slow; depths 4 and 5 are tier e2e
_STARDIST = [pytest.param(d, g, marks=[pytest.mark.slow] if 2 ** d * g * 12 > 800 else _DEEP if d > 3 else [])
             for d in (1, 2, 3, 4, 5) for g in (1, 2, 4, 8)]


@pytest.mark.parametrize("depth, grid", _STARDIST)
def test_stardist_probe_matches_layer_arithmetic(depth, grid):
    from rescale4dl_bmz.models.config import make_config
    from rescale4dl_bmz.models.stardist_model import stardist_config
    from stardist.models import StarDist2D

    cfg = make_config("instance", architecture={"kind": "stardist", "grid": grid, "depth": depth, "base_filters": 1,
                                                "conv_after_unet": 2}).with_defaults()
    model = StarDist2D(stardist_config(cfg, 4 * cfg.divisor, 1, 1), basedir=None).keras_model
    analytic = analytic_receptive_field(model)
    rf = empirical_receptive_field(model, phases=2 ** depth, divisor=cfg.divisor, start=analytic + 4 * cfg.divisor)
    assert not rf["empirical_clipped"]
    assert rf["empirical_px"] == analytic
    assert rf["empirical_min_px"] <= analytic <= rf["empirical_max_px"]


def _saturated_dead_unet():
    """A U-Net in the state that broke the old probe after training (found on the demo's og):
    logits of hundreds (the softmax is exactly 0/1 in float32, so input gradients vanish) and
    dead ReLU channels (negative biases)."""
    import numpy as np

    model = build_unet(depth=2, base_filters=4)
    for layer in model.layers:
        if layer.name == "logits_conv":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 1e4, bias])
        elif layer.name in ("enc2_conv1", "dec1_conv1"):
            kernel, bias = layer.get_weights()
            bias[: len(bias) // 2] = -1e3  # half the channels never fire
            layer.set_weights([kernel, bias])
    return model, np


def test_probe_ignores_trained_weights_that_kill_gradients():
    import tensorflow as tf

    model, np = _saturated_dead_unet()
    # the network really is in the broken state: the plain input gradient is all zero
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 68, 68, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = model(x, training=False)
        target = tf.reduce_sum(out[:, 34, 34, :] * tf.constant([0.3, -1.2, 0.8]))
    assert not np.any(tape.gradient(target, x).numpy())
    rf = empirical_receptive_field(model, phases=4, divisor=4, start=68)
    assert rf["empirical_px"] == analytic_receptive_field(model) == 49


def test_a_failing_probe_keeps_the_model(caplog):
    """The RF record is a diagnostic: when it cannot be measured it says so, and training goes on."""
    import keras

    from rescale4dl_bmz.models.config import make_config
    from rescale4dl_bmz.models.fitting import rf_record

    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inp)
    x = keras.layers.Reshape((-1, 2))(x)  # a layer neither measure can follow
    model = keras.Model(inp, x)
    rf = rf_record(model, make_config("semantic").with_defaults())
    assert "analytic_error" in rf and "empirical_error" in rf
    assert "kept" in caplog.text
