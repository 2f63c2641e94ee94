"""Done-markers: what makes every stage idempotent.

A stage writes its outputs atomically and `<factor>/<stage>.done.json` last, and skips itself when
that marker still holds. So a rerun after a crash (even `kill -9` in the middle of a training)
redoes only what had not finished, and gives the same tables. A marker lists the files it vouches
for (size, modification time) and the digest of the marker of the stage it built on; a marker whose
files changed or went missing is dropped and its stage redone (`check_done`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from pathlib import Path

from rescale4dl_bmz.files.text_files import write_json
from rescale4dl_bmz.sweep.plan import Plan, factor_dir

log = logging.getLogger(__name__)

UPSTREAM = {"train": "data", "predict": "train", "evaluate": "predict"}  # the stage each one builds on


def marker_path(plan: Plan, factor: str, stage: str) -> Path:
    """Where the stage's done-marker of this factor lives."""
    return factor_dir(plan, factor) / f"{stage}.done.json"


def _stamp(path: Path) -> list[int]:
    """Size and modification time: what a marker records of each file it vouches for."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _upstream(plan: Plan, factor: str, stage: str) -> str | None:
    """The stage this one builds on (`train` is skipped for a pretrained package)."""
    up = UPSTREAM.get(stage)
    if up == "train" and not marker_path(plan, factor, "train").exists() and plan.package is not None:
        up = "data"
    return up


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_done(plan: Plan, factor: str, stage: str) -> dict | None:
    """The stage's done-marker when it still holds: every file it vouches for is there with the size
    and modification time it had, and the stage it built on is still the one it recorded."""
    path = marker_path(plan, factor, stage)
    try:
        text = path.read_text(encoding="utf-8")
        info = json.loads(text)
        files = info["files"]
        root = factor_dir(plan, factor)
        if any(_stamp(root / rel) != list(stamp) for rel, stamp in files.items()):
            return None
        up = _upstream(plan, factor, stage)
        if up is not None:
            if check_done(plan, factor, up) is None:
                return None
            if info.get("upstream") != _digest(marker_path(plan, factor, up).read_text(encoding="utf-8")):
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return info


def is_done(plan: Plan, factor: str, stage: str) -> bool:
    """Whether the stage finished and its outputs are still what it wrote (else it is redone)."""
    if check_done(plan, factor, stage) is not None:
        return True
    if marker_path(plan, factor, stage).exists():
        log.warning("[%s] %s: the files its done-marker vouches for changed or are missing; redoing it", factor, stage)
        marker_path(plan, factor, stage).unlink(missing_ok=True)
    return False


def marker_key(plan: Plan, factor: str, stage: str) -> str:
    """A cache key for Prefect: the valid marker's digest, else a fresh one (never a stale cache hit)."""
    info = check_done(plan, factor, stage)
    return _digest(marker_path(plan, factor, stage).read_text(encoding="utf-8")) if info else uuid.uuid4().hex


def mark_done(plan: Plan, factor: str, stage: str, info: dict, files: list[Path] | None = None) -> dict:
    """Write the stage's done-marker last, vouching for `files` (size and modification time)."""
    root = factor_dir(plan, factor)
    info = {"factor": factor, "stage": stage, **info,
            "files": {p.relative_to(root).as_posix(): _stamp(p) for p in (files or [])}}
    up = _upstream(plan, factor, stage)
    if up is not None:
        info["upstream"] = _digest(marker_path(plan, factor, up).read_text(encoding="utf-8"))
    write_json(marker_path(plan, factor, stage), info)
    return info


def read_done(plan: Plan, factor: str, stage: str) -> dict:
    """The valid done-marker's record (what the stage returned when it finished)."""
    info = check_done(plan, factor, stage)
    if info is None:
        raise RuntimeError(f"{marker_path(plan, factor, stage)}: not a valid done-marker")
    return info

