"""What a sweep shows in the terminal: one progress bar over factors x stages (counts and ETA),
per-epoch lines, the cached stages named once, and a final summary block with failures first.

Without `--verbose`, log lines that a microscopist cannot act on are dropped: Prefect's per-task
state lines (the Prefect UI keeps them), the child's tracebacks (the failure summary names the
cause and the log), TensorFlow's C++ start-up lines, Keras progress bars and retracing warnings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

STAGE_NAMES = {"data": "rescale", "train": "train", "predict": "predict", "evaluate": "evaluate"}
_TF_LINE = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d\d)")


class TerminalHandler(logging.Handler):
    """Writes log lines above the progress bar (tqdm.write); quiet unless verbose."""

    def __init__(self, verbose: bool = False):
        super().__init__()
        self.verbose = verbose
        self.setFormatter(logging.Formatter("%(asctime)s %(message)s" if not verbose else
                                            "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        name, msg = record.name, record.getMessage()
        if name.startswith(("prefect.task_runs", "prefect.flow_runs")):
            return False  # state lines and tracebacks: the progress bar and the summary say it
        if name.startswith("prefect") and record.levelno < logging.WARNING:
            return False
        if name == "rescale4dl.train" and (msg[:1].isspace() or msg.startswith(("Traceback", "patch size"))
                                           or _TF_LINE.match(msg)):
            return False
        if name.startswith("rescale4dl_bmz.data.ladder") and record.levelno < logging.WARNING:
            return False  # the sweep's own '[factor] data:' line says it
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if not self.verbose and record.levelno >= logging.WARNING:
                text = _short(text)
                if record.levelno == logging.WARNING:
                    text = text.replace(" WARNING", "", 1)
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _short(text: str) -> str:
    """A multi-line error as one line: its first line and its last exception line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) <= 1:
        return text
    tail = [ln.strip() for ln in lines if re.match(r"^\s*[A-Za-z_][\w.]*(Error|Exception)\b", ln)]
    return lines[0] + (f" ... {tail[-1]}" if tail and tail[-1] not in lines[0] else "")


def setup_logging(verbose: bool = False) -> None:
    """Root logging through `TerminalHandler`; library loggers at WARNING."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, TerminalHandler):
            root.removeHandler(h)
    root.addHandler(TerminalHandler(verbose))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "distributed", "numba", "h5py", "absl", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
        # a damaged TIFF is reported once, as our own error naming the file
        logging.getLogger("tifffile").setLevel(logging.ERROR)


@contextlib.contextmanager
def muted_stderr_fd():
    """Silence file descriptor 2 (C++ start-up lines of TensorFlow), then restore it."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some notebooks)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_frameworks() -> None:
    """Import TensorFlow and Keras with their start-up lines muted; no Keras progress bars."""
    with muted_stderr_fd():
        import keras
        import tensorflow as tf  # noqa: F401
    keras.utils.disable_interactive_logging()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class SweepProgress:
    """One progress display across factors x stages.

    A bar with counts and ETA on a terminal; elsewhere (logs, notebooks) one line per finished
    stage with the same counts and ETA. Stages that an earlier run had finished are collected and
    named once at the end instead of one line each."""

    def __init__(self, factors: Sequence[str], stages: Sequence[str], out: str | Path | None = None,
                 bar: bool | None = None):
        self.factors, self.stages = list(factors), list(stages)
        self.total = len(self.factors) * len(self.stages)
        self.out = Path(out) if out is not None else None
        self.count, self.t0 = 0, time.time()
        self.last = self.t0
        self.durations: dict[str, list[float]] = {}
        self.left = {s: len(self.factors) for s in self.stages}
        self.reused: dict[str, list[str]] = {}
        self.finished: set[str] = set()
        self.log = logging.getLogger("rescale4dl.progress")
        bar = sys.stderr.isatty() if bar is None else bar
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc="sweep", unit="stage", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc} {bar} {n_fmt}/{total_fmt} stages, {elapsed} elapsed{postfix}")

    def _was_reused(self, factor: str, stage: str, state) -> bool:
        if state is not None and getattr(state, "name", "") == "Cached":
            return True
        if self.out is None:
            return False
        marker = self.out / factor / f"{stage}.done.json"
        try:
            return marker.stat().st_mtime < self.t0 - 1
        except OSError:
            return False

    def update(self, factor: str, stage: str, state=None, ok: bool = True) -> None:
        """A stage of a factor ended (`state`: its Prefect state, to tell cached results)."""
        self.count += 1
        now = time.time()
        reused = ok and self._was_reused(factor, stage, state)
        self.left[stage] = self.left.get(stage, 1) - 1
        if ok and not reused:  # sequential stages: the time since the last one is this one's
            self.durations.setdefault(stage, []).append(now - self.last)
        self.last = now
        if reused:
            self.reused.setdefault(factor, []).append(STAGE_NAMES.get(stage, stage))
        if not ok or stage == self.stages[-1]:
            self.finished.add(factor)
        what = f"{factor} {STAGE_NAMES.get(stage, stage)} " + ("reused" if reused else "done" if ok else "FAILED")
        where = f"factors finished {len(self.finished)} of {len(self.factors)}"
        eta = self.eta()
        if self.bar is not None:
            self.bar.set_postfix_str(f"{eta} · {len(self.finished)}/{len(self.factors)} factors · {what}",
                                     refresh=False)
            self.bar.update(1)
        elif not reused:
            self.log.info("%s (%d of %d stages, %s, %s)", what, self.count, self.total, where, eta)

    def eta(self) -> str:
        """Time left from the mean duration of each kind of stage (training dominates)."""
        if self.count >= self.total:
            return "done"
        left = 0.0
        light = [d for s, ds in self.durations.items() if s != "train" for d in ds]
        for stage, n in self.left.items():
            if n <= 0:
                continue
            seen = self.durations.get(stage)
            if not seen and (stage == "train" or not light):  # training dominates: wait for one
                return f"time left: after the first {STAGE_NAMES.get(stage, stage)}"
            seen = seen or light
            left += n * sum(seen) / len(seen)
        return f"about {_eta(left)} left"

    def skip(self, factor: str, n_stages: int) -> None:
        """A failed factor's remaining stages will not run: count them as settled."""
        self.count += n_stages
        for stage in self.stages[len(self.stages) - n_stages:]:
            self.left[stage] -= 1
        if self.bar is not None:
            self.bar.update(n_stages)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.reused:
            n = sum(len(v) for v in self.reused.values())
            parts = "; ".join(f"{f} ({', '.join(s)})" for f, s in self.reused.items())
            self.log.info("reused from the earlier run in this folder (%d of %d stages): %s", n, self.total, parts)


def summary_block(summary: dict, out: str | Path) -> str:
    """The end of a sweep in plain words: failures first, then the decision and where the files are."""
    from rescale4dl_bmz.sweep.report import failure_records, failure_sentence

    lines = ["", "─" * 72]
    failures = failure_records(summary.get("failed"))
    if failures:
        lines.append(f"{len(failures)} of {summary.get('n_requested', len(failures))} factor(s) FAILED; "
                     "the results are partial:")
    for rec in failures:
        lines.append("FAILED  " + failure_sentence(rec))
    if summary.get("headline"):
        import textwrap

        head = summary["headline"]
        head = head[:1].upper() + head[1:]
        lines.append(textwrap.fill(head, width=100, subsequent_indent="  "))
    for key, label in (("report", "report"), ("package", "model package"), ("summary_csv", "results table")):
        if summary.get(key):
            path = Path(summary[key])
            if key == "report":
                path = path.with_suffix(".html")  # the page to open (self-contained, can be e-mailed)
            lines.append(f"  {label:14s} {path}")
    lines.append(f"  {'all outputs':14s} {Path(out).resolve()}")
    lines.append("─" * 72)
    return "\n".join(lines)
