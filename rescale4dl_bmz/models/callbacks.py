"""Keras callbacks for a training run: step budget, best-on-validation weights, epoch log."""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Callable

from rescale4dl_bmz.models import require_tensorflow_backend
from rescale4dl_bmz.files.text_files import write_text

keras = require_tensorflow_backend()
log = logging.getLogger(__name__)

LOG_COLUMNS = ("epoch", "steps", "loss", "val_loss", "learning_rate", "time_s")


class StepBudget(keras.callbacks.Callback):
    """Stop after `total` optimiser steps (the epoch in progress is then validated and logged)."""

    def __init__(self, total: int):
        super().__init__()
        self.total = int(total)
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps >= self.total:
            self.model.stop_training = True


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the lowest `monitor` and restore them at the end."""

    def __init__(self, monitor: str = "val_loss"):
        super().__init__()
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = -1
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best:
            self.best, self.best_epoch = float(value), epoch
            self.weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch, the CSV training log rewritten each epoch, and a progress hook.
    Epochs are counted by this log, so training resumed in rounds (`models.rounds`) keeps counting."""

    def __init__(self, csv_path: Path, epochs: int, budget: StepBudget,
                 progress: Callable[[dict], None] | None = None):
        super().__init__()
        self.csv_path, self.epochs, self.budget, self.progress = Path(csv_path), epochs, budget, progress
        self.rows: list[dict] = []
        self._t0 = time.perf_counter()

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": len(self.rows) + 1, "steps": self.budget.steps,
               "loss": _num(logs.get("loss")), "val_loss": _num(logs.get("val_loss")),
               "learning_rate": _num(self.model.optimizer.learning_rate),
               "time_s": round(time.perf_counter() - self._t0, 3)}
        self.rows.append(row)
        log.info("epoch %d/%d  steps %d  loss %.4f  val_loss %.4f  lr %.2g", row["epoch"], self.epochs,
                 row["steps"], row["loss"], row["val_loss"], row["learning_rate"])
        write_text(self.csv_path, rows_to_csv(self.rows))
        if self.progress is not None:
            self.progress({**row, "epochs": self.epochs})


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
