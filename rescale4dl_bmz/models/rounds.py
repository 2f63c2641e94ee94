"""Train several factors' models in rounds inside one process: successive halving without checkpoints.

Each factor keeps its model, optimiser, data stream and callbacks alive between rounds (small
models fit in memory together), so a round continues exactly where the last one stopped: the
U-Net through repeated `fit(initial_epoch=...)` on the same batch stream, StarDist through
repeated `train(...)` on the same prepared model. Stateful callbacks (learning-rate schedule,
early stopping, best weights) keep their state across rounds, and the best-on-validation weights
are restored once, at the end. Seeds are set before each build and each round, so the result does
not depend on the order in which factors take their turns.

After each round every running factor is scored on its own validation split with a score that
compares across factors (in [0, 1]; validation losses do not compare across pixel sizes and class
balances):
- U-Net: the semantic IoU ("ALL": mean IoU of the inner and edge classes) of the arg-max
  prediction over all validation patches pooled;
- StarDist: the object F1 at IoU 0.5 (`stardist.matching`) of `predict_instances` with StarDist's
  default thresholds (prob 0.5, NMS 0.4) on the validation images (thresholds are optimised only at
  the end, for the survivors).
`decide.halving` decides who stops. Survivors' model folders are written exactly as
`training.train_model` writes them (cost.json adds the schedule, the round budgets and scores);
stopped factors get no folder, only their record in the returned decision.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from rescale4dl_bmz.models.config import TrainConfig
from rescale4dl_bmz.models.store import staging_folder
from rescale4dl_bmz.models.training import PreparedRun, prepare_training, reproducible, write_model_files
from rescale4dl_bmz.models.fitting import fit_stardist, finish_stardist, new_stardist_run, new_unet, save_unet, training_callbacks, unet_reduce_lr, unet_validation

log = logging.getLogger(__name__)

DEFAULT_STARDIST_THRESHOLDS = {"prob_thresh": 0.5, "nms_thresh": 0.4}


@dataclass
class FactorRun:
    """One factor's training data and where its model goes."""

    factor: str
    images: Sequence[np.ndarray]
    masks: Sequence[np.ndarray]
    config: TrainConfig
    out_dir: Path
    names: Sequence[str] | None = None


class _Stopped(Exception):
    """Thrown into a stopped factor's staging folder so that it is discarded."""


class _Rounds:
    """One factor in training: `advance(steps)` trains up to `steps` and scores; `finish()` writes."""

    def __init__(self, run: PreparedRun, out_dir: Path):
        self.run, self.cfg = run, run.cfg
        self._stage = contextlib.ExitStack()
        self.tmp = self._stage.enter_context(staging_folder(out_dir))
        self.train_time = 0.0
        self.prep_s = 0.0  # set by `train_in_rounds`: this factor's checks, split and build
        self.rounds_done = 0

    @property
    def steps(self) -> int:
        return self.budget.steps

    def advance(self, target: int) -> float:
        """Train on to `target` optimiser steps in total (nothing when already there); the score after."""
        from rescale4dl_bmz.models.callbacks import keras

        if target > self.budget.steps:
            keras.utils.set_random_seed(self.cfg.seed + self.rounds_done)
            t0 = time.perf_counter()
            self._fit(target)
            self.train_time += time.perf_counter() - t0
            for cb in self.callbacks:  # later rounds continue: no callback starts over
                cb.on_train_begin = _no_op
        self.rounds_done += 1
        return self.score()

    def discard(self) -> None:
        """A stopped factor: drop its staging folder (no model folder is written)."""
        self._stage.__exit__(_Stopped, _Stopped(), None)

    def close(self, exc: BaseException | None) -> None:
        """End after a failure elsewhere: the staging folder is removed."""
        self._stage.__exit__(type(exc), exc, None)

    def finish(self, extra_cost: dict) -> dict:
        """Best weights, model files, cost: the folder `train_model` would write; returns the cost.
        Its wall time is this factor's own (preparation, its rounds, saving), not the other factors'."""
        t0 = time.perf_counter()
        rf, _, n_params = self._save()
        own = self.prep_s + self.train_time + time.perf_counter() - t0
        cost = write_model_files(self.tmp, self.run, self.budget.steps, len(self.logger.rows), rf, n_params,
                                 self.train_time, {**extra_cost, "wall_time_s": round(own, 3)})
        self._stage.close()  # renames the staging folder onto the model folder
        return cost


class _UNetRounds(_Rounds):
    def __init__(self, run: PreparedRun, out_dir: Path):
        from rescale4dl_bmz.models.augment import batch_stream
        from rescale4dl_bmz.models.callbacks import BestWeights, keras

        super().__init__(run, out_dir)
        cfg, split = run.cfg, run.split
        keras.utils.set_random_seed(cfg.seed)
        self.model = new_unet(cfg)
        self.budget, self.logger, extra = training_callbacks(cfg, self.tmp, run.epochs, run.steps, None)
        self.best = BestWeights("val_loss")
        self.best.on_train_end = _no_op  # restored once, in `_save`
        self.callbacks = [unet_reduce_lr(cfg), *extra, self.best, self.logger]
        self.x_val, self.y_val = unet_validation(split)
        self.stream = batch_stream(np.stack(split.train_x), np.stack(split.train_y), cfg.batch_size, cfg.seed,
                                   cfg.augmentation)

    def _fit(self, target: int) -> None:
        n, spe = target - self.budget.steps, self.run.spe
        self.budget.total = target
        first = len(self.logger.rows)
        # exactly the batches this round uses: the stream stays where the round ended
        self.model.fit((b for b in itertools.islice(self.stream, n)), steps_per_epoch=spe, initial_epoch=first,
                       epochs=first + math.ceil(n / spe), validation_data=(self.x_val, self.y_val), shuffle=False,
                       validation_batch_size=self.cfg.batch_size, callbacks=self.callbacks, verbose=0)
        gc.collect()

    def score(self) -> float:
        from rescale4dl_bmz.metrics.semantic import semantic_scores

        proba = self.model.predict(self.x_val, batch_size=self.cfg.batch_size, verbose=0)
        pred = np.argmax(proba, axis=-1).astype(np.uint8)
        flat = (lambda a: a.reshape(-1, a.shape[-1]))  # noqa: E731 - patches stacked into one 2D image
        return float(semantic_scores(flat(self.y_val), flat(pred)).iou_semantic)

    def _save(self) -> tuple:
        self.stream.close()
        if self.best.weights is not None:
            self.model.set_weights(self.best.weights)
        rf, n_params = save_unet(self.model, self.cfg, self.tmp, self.best.best_epoch)
        return rf, None, n_params

    def discard(self) -> None:
        self.stream.close()
        super().discard()


class _StarDistRounds(_Rounds):
    def __init__(self, run: PreparedRun, out_dir: Path):
        from rescale4dl_bmz.models.callbacks import keras

        super().__init__(run, out_dir)
        keras.utils.set_random_seed(run.cfg.seed)
        self.model = new_stardist_run(run.split, run.cfg, self.tmp, run.epochs, run.spe)
        self.budget, self.logger, extra = training_callbacks(run.cfg, self.tmp, run.epochs, run.steps, None)
        self.model.callbacks += [*extra, self.logger]
        self.callbacks = self.model.callbacks
        # StarDist loads its best checkpoint after every `train`: only after the last round here
        self.model._training_finished = _no_op

    def _fit(self, target: int) -> None:
        n, spe = target - self.budget.steps, self.run.spe
        self.budget.total = target
        if target >= self.run.steps:
            del self.model._training_finished  # the last round: StarDist's own ending (best weights)
        fit_stardist(self.model, self.run.split, self.cfg, self.cfg.seed + self.rounds_done, math.ceil(n / spe), spe)

    def score(self) -> float:
        from stardist.matching import matching_dataset

        from rescale4dl_bmz.models.prediction import stardist_tiles
        from rescale4dl_bmz.models.stardist_model import quiet

        split = self.run.split
        with quiet(stderr=True):
            preds = [self.model.predict_instances(x, n_tiles=stardist_tiles(x.shape, max(1024, split.patch_size)),
                                                  show_tile_progress=False, **DEFAULT_STARDIST_THRESHOLDS)[0]
                     for x in split.val_x]
            stats = matching_dataset(list(split.val_y), preds, thresh=0.5, show_progress=False)
        return float(stats.f1)

    def _save(self) -> tuple:
        if "_training_finished" in vars(self.model):
            del self.model._training_finished
            self.model._training_finished()  # budget reached in an earlier round: load the best weights now
        return finish_stardist(self.model, self.run.split, self.cfg)


def _no_op(*args, **kwargs) -> None:
    return None


Budgets = Callable[[int, int], list[int]]          # (total steps, steps per epoch) -> cumulative budgets
StopRule = Callable[[Mapping[str, float]], list[str]]  # a round's scores -> the factors that stop


def train_in_rounds(runs: Sequence[FactorRun], n_rounds: int, budgets: Budgets, stop: StopRule) -> dict:
    """Successive halving over `runs` (one per factor): every factor trains round by round to the
    cumulative `budgets` of its steps; after each round but the last, `stop` (the rule,
    `decide.halving`) names the factors clearly behind, which stop.
    Returns {"rounds", "score", "factors": {factor: record}}; a record holds "status"
    (done | stopped), "stopped_after_round", "steps" (what it got), "budget_steps" (the full budget),
    "round_steps" and "scores" (one per round it ran), and for survivors the cost of `cost.json`."""
    if not runs:
        return {"rounds": n_rounds, "factors": {}}
    prepared, prep_s = {}, {}
    for r in runs:
        t0 = time.perf_counter()
        prepared[r.factor] = prepare_training(r.images, r.masks, r.config, r.out_dir, names=r.names)
        prep_s[r.factor] = time.perf_counter() - t0
    first = next(iter(prepared.values())).cfg
    trainers: dict[str, _Rounds] = {}
    records: dict[str, dict] = {}
    try:
        with reproducible(first):
            for r in runs:
                run = prepared[r.factor]
                t0 = time.perf_counter()
                trainers[r.factor] = (_UNetRounds if run.cfg.is_unet else _StarDistRounds)(run, Path(r.out_dir))
                trainers[r.factor].prep_s = prep_s[r.factor] + time.perf_counter() - t0
                records[r.factor] = {"status": "running", "stopped_after_round": None, "budget_steps": run.steps,
                                     "round_steps": [], "scores": []}
            budget = {f: budgets(prepared[f].steps, prepared[f].spe) for f in trainers}
            running = list(trainers)
            for rnd in range(n_rounds):
                scores = {}
                for f in running:
                    scores[f] = trainers[f].advance(budget[f][rnd])
                    records[f]["round_steps"].append(trainers[f].steps)
                    records[f]["scores"].append(round(scores[f], 6))
                log.info("halving round %d of %d: %s", rnd + 1, n_rounds,
                         ", ".join(f"{f} {s:.3f} ({trainers[f].steps} steps)" for f, s in scores.items()))
                if rnd < n_rounds - 1:
                    for f in stop(scores):
                        log.info("halving: %s stops after round %d (score %.3f, best %.3f)", f, rnd + 1,
                                 scores[f], max(scores.values()))
                        trainers[f].discard()
                        running.remove(f)
                        records[f].update(status="stopped", stopped_after_round=rnd + 1)
            for f in running:
                cost = trainers[f].finish({"schedule": "halving", "round_steps": records[f]["round_steps"],
                                           "round_scores": records[f]["scores"]})
                records[f].update(status="done", cost=cost)
    except BaseException as exc:
        for f, t in trainers.items():
            if records[f]["status"] == "running":
                with contextlib.suppress(Exception):
                    t.close(exc)
        raise
    for f, t in trainers.items():
        cfg = prepared[f].cfg
        records[f].update(steps=t.steps, train_time_s=round(t.train_time, 3),
                          wall_time_s=records[f].get("cost", {}).get("wall_time_s", round(t.prep_s + t.train_time, 3)),
                          pixels_seen=int(t.steps * cfg.batch_size * cfg.patch_size ** 2))
    score = "semantic IoU (inner, edge) of the validation patches" if first.is_unet else \
        "object F1 at IoU 0.5 on the validation images (StarDist default thresholds)"
    return {"rounds": n_rounds, "score": score, "factors": records}
