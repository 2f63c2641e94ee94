"""Successive halving across factors: the budgets of the rounds and the stopping rule (pure).

All factors train in rounds to cumulative step budgets B/2^(R-1), ..., B/2, B. After each round
but the last, a factor stops when its validation score is below the round's best score by MORE
than `margin` (a score exactly `margin` behind continues). The best factor of a round always
continues, so at least one factor reaches the full budget; the last round stops nobody; a factor
without a score (NaN) cannot be judged and continues; and a round whose best score is below
`MIN_USEFUL_IOU` (0.2, the bar under which `select` calls the networks untrained) stops nobody:
networks that have not learned yet cannot be ranked (on E. coli at 10 steps the factor an
exhaustive sweep chose scored 0.002 against the round's best 0.06, and was stopped). The scores are in [0, 1] and comparable
across factors (a mean foreground IoU for the U-Net, an object F1 for StarDist: see
`models.rounds`), which validation losses are not.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from rescale4dl_bmz.decide.select import MIN_USEFUL_IOU


def round_budgets(total_steps: int, rounds: int, steps_per_epoch: int = 1) -> list[int]:
    """Cumulative step budgets of the `rounds` rounds: about total / 2^(rounds-1-r) for round r,
    rounded to whole epochs (`steps_per_epoch`) where that keeps the budgets increasing, the last one
    exactly `total_steps` (a factor that never stops gets what an exhaustive sweep gives it). A budget
    too small to split that finely repeats a value: a round in which that factor does not train."""
    if total_steps < 1 or rounds < 1:
        raise ValueError(f"need a positive budget and number of rounds, got {total_steps} steps, {rounds} rounds")
    unit = max(1, min(steps_per_epoch, total_steps))
    budgets: list[int] = []
    for r in range(rounds - 1):
        share = total_steps / 2 ** (rounds - 1 - r)
        low = budgets[-1] if budgets else 0
        steps = max(unit, round(share / unit) * unit)
        if not low < steps < total_steps:
            steps = min(max(low + 1, math.ceil(share)), total_steps)
        budgets.append(steps)
    return budgets + [total_steps]


def stopped_after_round(scores: Mapping[str, float], margin: float) -> list[str]:
    """The factors that stop after a (non-final) round: score < best - margin. NaN never stops; a
    round whose best is below `MIN_USEFUL_IOU` stops nobody."""
    if margin < 0:
        raise ValueError(f"the margin must be >= 0, got {margin}")
    known = {f: s for f, s in scores.items() if s is not None and not math.isnan(s)}
    if not known:
        return []
    best = max(known.values())
    if best < MIN_USEFUL_IOU:
        return []  # nobody has learned yet: no ranking
    return [f for f, s in known.items() if best - s > margin + 1e-12]  # float noise is not a lead


def halving_decisions(score_rounds: Sequence[Mapping[str, float]], margin: float, n_rounds: int) -> dict[str, int | None]:
    """Replay the rule over the scores of each round (round r holds the factors still running):
    factor -> the round after which it stopped (1-based), or None when it ran to the end."""
    stopped: dict[str, int | None] = {}
    for r, scores in enumerate(score_rounds, start=1):
        for f in scores:
            stopped.setdefault(f, None)
        if r < n_rounds:
            for f in stopped_after_round(scores, margin):
                stopped[f] = r
    return stopped


def rule_sentence(margin: float, n_rounds: int) -> str:
    """The rule in words, for the report."""
    return (f"Successive halving: every factor trained in {n_rounds} rounds with cumulative budgets of 1/"
            + ", 1/".join(str(2 ** (n_rounds - 1 - r)) for r in range(n_rounds - 1))
            + " and all of the full budget; after each round but the last, a factor stopped when its validation "
            f"score was below that round's best by more than {margin:g} (the best always continues; a round "
            f"whose best score is below {MIN_USEFUL_IOU:g} stops nobody, as no network has learned yet).")


def halving_rule(rounds: int, margin: float) -> tuple[Callable[[int, int], list[int]],
                                                      Callable[[Mapping[str, float]], list[str]]]:
    """The rule as the two functions `models.rounds.train_in_rounds` applies: each factor's round
    budgets from (total steps, steps per epoch), and the factors a round's scores stop."""
    if margin < 0:
        raise ValueError(f"the margin must be >= 0, got {margin}")
    return (lambda total, per_epoch: round_budgets(total, rounds, per_epoch),
            lambda scores: stopped_after_round(scores, margin))
