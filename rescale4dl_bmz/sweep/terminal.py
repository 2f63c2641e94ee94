"""What a sweep shows in the terminal: one progress bar over factors x stages (counts and ETA),
the cached stages named once, and a final summary block with failures first.

Which log lines reach the terminal at all (and how) is the process's logging setup:
`rescale4dl_bmz.process.logs`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Sequence

STAGE_NAMES = {"data": "rescale", "train": "train", "predict": "predict", "evaluate": "evaluate"}


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
        self.log = logging.getLogger(__name__)
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
