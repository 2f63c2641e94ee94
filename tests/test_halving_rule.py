"""The successive-halving rule (`decide.halving`) on score tables: budgets, margin edges, ties."""

from __future__ import annotations

import math

import pytest

from rescale4dl_bmz.decide.halving import halving_decisions, round_budgets, rule_sentence, stopped_after_round
from rescale4dl_bmz.sweep.config import make_sweep_config


@pytest.mark.parametrize("total, rounds, spe, expected", [
    (40, 3, 2, [10, 20, 40]),       # B/4, B/2, B in whole epochs
    (1000, 3, 7, [252, 497, 1000]),  # rounded to epochs of 7 steps
    (8, 2, 8, [4, 8]),               # an epoch longer than the share: steps, not epochs
    (2, 3, 1, [1, 2, 2]),            # too small to split: a round without training
    (1, 3, 1, [1, 1, 1]),
])
def test_round_budgets(total, rounds, spe, expected):
    budgets = round_budgets(total, rounds, spe)
    assert budgets == expected
    assert budgets[-1] == total and budgets == sorted(budgets) and len(budgets) == rounds


def test_a_factor_stops_only_when_behind_by_more_than_the_margin():
    scores = {"og": 0.80, "ds2": 0.75, "ds4": 0.7499, "ds8": 0.20}
    assert sorted(stopped_after_round(scores, 0.05)) == ["ds4", "ds8"]  # exactly the margin behind continues
    assert stopped_after_round(scores, 0.59) == ["ds8"]
    assert stopped_after_round(scores, 0.7) == []
    assert sorted(stopped_after_round(scores, 0.0)) == ["ds2", "ds4", "ds8"]


def test_a_round_in_which_nobody_has_learned_stops_nobody():
    # E. coli, 10 steps: og (the exhaustive sweep's choice at 40 steps) scored 0.002, the best 0.062
    early = {"og": 0.00222, "ds2": 0.014445, "ds4": 0.061567, "ds8": 0.049645, "ds16": 0.0}
    assert stopped_after_round(early, 0.05) == []
    assert stopped_after_round({**early, "ds2": 0.208}, 0.05) == ["og", "ds4", "ds8", "ds16"]


def test_float_noise_is_not_a_lead():
    assert stopped_after_round({"a": 0.3, "b": 0.25}, 0.05) == []  # 0.3 - 0.25 = 0.04999999999999999 or more


def test_ties_and_the_best_always_continue():
    assert stopped_after_round({"a": 0.5, "b": 0.5, "c": 0.5}, 0.0) == []
    assert stopped_after_round({"a": 0.0, "b": 0.0}, 0.0) == []
    for margin in (0.0, 0.05, 1.0):
        scores = {"a": 0.1, "b": 0.9, "c": 0.4}
        assert "b" not in stopped_after_round(scores, margin)


def test_unscored_factors_are_never_stopped():
    assert stopped_after_round({"a": math.nan, "b": 0.9, "c": 0.1}, 0.05) == ["c"]
    assert stopped_after_round({"a": math.nan, "b": math.nan}, 0.05) == []
    assert stopped_after_round({}, 0.05) == []
    with pytest.raises(ValueError):
        stopped_after_round({"a": 1.0}, -0.1)


def test_decisions_over_rounds_and_the_last_round_stops_nobody():
    rounds = [{"og": 0.5, "ds2": 0.6, "ds4": 0.2},   # ds4 stops after round 1
              {"og": 0.50, "ds2": 0.70},             # og stops after round 2
              {"ds2": 0.75}]
    assert halving_decisions(rounds, 0.05, 3) == {"og": 2, "ds2": None, "ds4": 1}
    last = [{"og": 0.9, "ds2": 0.1}]
    assert halving_decisions(last, 0.05, 1) == {"og": None, "ds2": None}  # a single round is the last


def test_rule_sentence_states_rounds_and_margin():
    text = rule_sentence(0.05, 3)
    assert "1/4, 1/2" in text and "more than 0.05" in text and "3 rounds" in text


def test_config_schedule(tmp_path):
    base = dict(images=tmp_path, masks=tmp_path, out=tmp_path / "o", task="semantic")
    config = make_sweep_config(**base)
    assert (config.schedule, config.halving_rounds, config.halving_margin) == ("exhaustive", 3, 0.05)
    assert make_sweep_config(**base, schedule="halving", halving_margin=0.1).halving_margin == 0.1
    from rescale4dl_bmz.errors import InputError

    for bad in ({"schedule": "bandit"}, {"halving_rounds": 1}, {"halving_margin": -0.1}, {"halving_rounds": True}):
        with pytest.raises(InputError):
            make_sweep_config(**base, **bad)
