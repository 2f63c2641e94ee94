"""Receptive fields: the U-Net formula, layer arithmetic on built networks, and measurement."""

from __future__ import annotations

import pytest

from rescale4dl_bmz.models.receptive_field import analytic_receptive_field, empirical_receptive_field
from rescale4dl_bmz.models.unet import analytic_unet_rf, build_unet


def test_unet_formula_gives_the_papers_values():
    assert [analytic_unet_rf(d) for d in (1, 2, 3, 4)] == [21, 49, 105, 217]


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_unet_analytic_and_empirical_agree(depth):
    model = build_unet(depth=depth, base_filters=4)
    analytic = analytic_receptive_field(model)
    assert analytic == analytic_unet_rf(depth)
    rf = empirical_receptive_field(model, phases=2 ** depth, divisor=2 ** depth, n_trials=2 if depth < 4 else 1,
                                   start=analytic + 4 * 2 ** depth)
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
    rf = empirical_receptive_field(model, phases=1, start=32, n_trials=2)
    assert rf["empirical_px"] == rf["empirical_max_px"] == 16
    assert rf["probe_size_px"] == 32


def test_probe_grows_until_the_field_fits():
    model = build_unet(depth=3, base_filters=2)
    rf = empirical_receptive_field(model, phases=1, divisor=8, start=16, n_trials=2)
    assert rf["probe_size_px"] >= 128 and not rf["empirical_clipped"]


def test_stardist_theoretical_fields():
    """StarDist 2D (depth 3): about 98 px at grid 1 and 200 px at grid 2, and the measurement agrees."""
    from rescale4dl_bmz.models.config import make_config
    from rescale4dl_bmz.models.stardist_model import stardist_config, stardist_rf_estimate
    from stardist.models import StarDist2D

    found = {}
    for grid in (1, 2):
        cfg = make_config("instance", architecture={"kind": "stardist", "grid": grid, "base_filters": 4,
                                                    "conv_after_unet": 8}).with_defaults()
        model = StarDist2D(stardist_config(cfg, 64, 1, 1), basedir=None)
        found[grid] = analytic_receptive_field(model.keras_model)
        if grid == 2:
            rf = empirical_receptive_field(model.keras_model, phases=8, divisor=cfg.divisor, n_trials=1,
                                           start=found[grid] + 64)
            assert rf["empirical_px"] == found[grid]
            # StarDist's own impulse-response estimate sees a smaller, effective field
            assert 0 < stardist_rf_estimate(model) <= rf["empirical_max_px"]
    assert found == {1: 98, 2: 200}
