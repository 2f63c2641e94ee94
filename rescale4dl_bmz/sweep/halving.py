"""The training stage of a `schedule: halving` sweep: all factors in one TensorFlow-worker job,
trained in rounds, the factors clearly behind on validation stopped (`decide.halving`,
`models.rounds`).

Resume: survivors get the ordinary train done-marker (so predict and evaluate run unchanged), and
`OUT/halving.json` (the decision) is written last, atomically. Its presence, naming exactly these
factors, with every survivor's train marker still valid, means the stage is done; anything else
(a crash in the middle, a factor added) trains all of these factors again in rounds.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from rescale4dl_bmz.decide.halving import rule_sentence
from rescale4dl_bmz.errors import FactorFailed, is_environment_fault, one_line
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.files.text_files import write_json
from rescale4dl_bmz.sweep.config import SweepConfig
from rescale4dl_bmz.sweep.markers import is_done, mark_done, marker_path
from rescale4dl_bmz.sweep.plan import Plan, factor_dir
from rescale4dl_bmz.sweep.stages import training_inputs

log = logging.getLogger(__name__)

HALVING_FILE = "halving.json"
# summary.csv columns of a halving sweep, beside `finish.OUTCOME_COLUMNS`
HALVING_COLUMNS = ("budget_steps", "halving_scores", "stopped_after_round")


def finished_decision(config: SweepConfig, plan: Plan, factors: list[str]) -> dict | None:
    """The recorded decision when it still holds for these factors and settings, else None."""
    try:
        decision = json.loads((Path(plan.out) / HALVING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (sorted(decision.get("factors", {})) != sorted(factors) or decision.get("rounds") != config.halving_rounds
            or decision.get("margin") != config.halving_margin):
        return None
    survivors = [f for f, r in decision["factors"].items() if r["status"] == "done"]
    return decision if all(is_done(plan, f, "train") for f in survivors) else None


def stage_halving(config: SweepConfig, plan: Plan, factors: list[str]) -> dict:
    """Train `factors` (their data done) by successive halving; returns the decision
    ({"rounds", "margin", "score", "rule", "factors": {factor: record}}, see `models.rounds`)."""
    decision = finished_decision(config, plan, factors)
    if decision is not None:
        return decision
    from rescale4dl_bmz.sweep.tensorflow_worker import WorkerJobFailed, shared_worker

    (Path(plan.out) / HALVING_FILE).unlink(missing_ok=True)
    jobs = []
    for factor in factors:
        root = factor_dir(plan, factor)
        marker_path(plan, factor, "train").unlink(missing_ok=True)
        shutil.rmtree(root / "model", ignore_errors=True)  # an earlier, unfinished attempt
        tc, images, masks = training_inputs(config, plan, factor)
        jobs.append({"factor": factor, "config": tc, "out": root / "model", "images": images, "masks": masks})
    log_file = Path(plan.out) / "logs" / "halving.log"
    log.info("halving: training %s in %d rounds (margin %g)", " ".join(factors), config.halving_rounds,
             config.halving_margin)
    try:
        decision = shared_worker().halve(jobs, config.halving_rounds, config.halving_margin, log_file)
    except Exception as exc:
        if is_environment_fault(exc):
            raise
        cause, where = (exc.cause, exc.log) if isinstance(exc, WorkerJobFailed) else (one_line(exc), str(log_file))
        raise FactorFailed(" ".join(factors), "train", cause, where) from exc
    decision["rule"] = rule_sentence(config.halving_margin, config.halving_rounds)
    for factor, record in decision["factors"].items():
        if record["status"] == "done":
            model_dir = factor_dir(plan, factor) / "model"
            cost = record["cost"]
            mark_done(plan, factor, "train", {"model": str(model_dir), **{k: cost.get(k) for k in
                      ("wall_time_s", "steps", "epochs", "pixels_seen")}},
                      sorted(p for p in model_dir.rglob("*") if p.is_file()))
        log.info("[%s] halving: %s after %d steps of %d (scores %s)", factor, record["status"], record["steps"],
                 record["budget_steps"], ", ".join(f"{s:.3f}" for s in record["scores"]))
    write_json(Path(plan.out) / HALVING_FILE, decision)  # last: its presence means the stage is done
    return decision


def stopped_train_record(record: dict) -> dict:
    """What a stopped factor's train stage reports (no model): the steps it got."""
    return {key: record.get(key) for key in ("steps", "wall_time_s", "pixels_seen")}


def halving_row(record: dict) -> dict:
    """The `HALVING_COLUMNS` of one factor's summary row."""
    return {"budget_steps": record["budget_steps"],
            "halving_scores": " ".join(f"{s:.3f}" for s in record["scores"]),
            "stopped_after_round": record["stopped_after_round"]}


def halving_markdown(decision: dict) -> str:
    """The report's section: the rule in words, then one row per factor."""
    n = decision["rounds"]
    head = "| Factor | Steps trained | Full budget | " + " | ".join(f"Score round {r + 1}" for r in range(n)) \
           + " | Outcome |\n|---|---|---|" + "---|" * n + "---|\n"
    rows = []
    for factor in sorted(decision["factors"], key=lambda f: parse_factor(f).scale):
        rec = decision["factors"][factor]
        scores = [f"{s:.3f}" for s in rec["scores"]] + ["–"] * (n - len(rec["scores"]))
        outcome = (f"stopped after round {rec['stopped_after_round']}" if rec["status"] == "stopped"
                   else "full budget")
        rows.append(f"| {factor} | {rec['steps']} | {rec['budget_steps']} | " + " | ".join(scores)
                    + f" | {outcome} |")
    stopped = [f for f, r in decision["factors"].items() if r["status"] == "stopped"]
    return (f"{decision.get('rule', rule_sentence(decision['margin'], n))} The validation score is the "
            f"{decision.get('score', 'validation score')}, on each factor's own validation split. "
            + (f"Stopped early, so not predicted, evaluated or eligible: {', '.join(stopped)}." if stopped
               else "No factor was stopped.") + "\n\n" + head + "\n".join(rows))
