"""Reading a finished sweep's run folder (RUN_DIR) for `select`, `plan` and `export`.

Layout (written by the sweep flow)::

    RUN_DIR/run.json         {"task", "pixel_size_um" (original, or null), "factors", "image_shape", "dataset",
                              "test" (held-out image names, optional)}
    RUN_DIR/summary.csv      one row per factor (and grid): factor, scale, grid, iou_mean, status, ...
    RUN_DIR/per_image.csv    one row per factor, grid and image: factor, grid, image, iou, ...
    RUN_DIR/<factor>/model/  the trained model folder
    RUN_DIR/<factor>/images/ the factor's images (test input of an exported package)
    RUN_DIR/figures/*.png    the sweep's figures

Only `run.json` and `summary.csv` are required; every problem is an `InputError` naming the file.
A sweep also writes `RUN_DIR/record.json` (`RunRecord`: config, input file stamps, code version,
and the SHA-256 of the tables it finished with); where it is present, tables that do not match
it are refused.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from rescale4dl_bmz.errors import InputError, describe_validation_error
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.vocabulary import ON_CHANGE, TASKS

log = logging.getLogger(__name__)

SUMMARY_REQUIRED = ("factor", "iou_mean")
COVER_FIGURES = ("iou_vs_coverage.png", "iou_vs_pixel_coverage.png", "iou_boxplot.png")


@dataclass(frozen=True)
class SweepRun:
    """What a run folder says: the sweep's metadata and its tables."""

    path: Path
    task: str
    pixel_size_um: float | None
    factors: tuple[str, ...]
    image_shape: tuple[int, int] | None
    dataset: str | None
    summary: pd.DataFrame
    per_image: pd.DataFrame | None
    test_images: tuple[str, ...] = ()  # names of the held-out images (run.json "test")

    def factor_dir(self, factor: str) -> Path:
        return self.path / parse_factor(factor).name

    def model_dir(self, factor: str) -> Path:
        return self.factor_dir(factor) / "model"

    def figure(self, names: tuple[str, ...] = COVER_FIGURES) -> Path | None:
        """The first existing figure among `names`, else any PNG in RUN_DIR/figures, else None."""
        folder = self.path / "figures"
        for name in names:
            if (folder / name).is_file():
                return folder / name
        pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
        return pngs[0] if pngs else None


def check_pixel_size(value: float | None, what: str = "--pixel-size") -> float | None:
    """None, or a positive finite pixel size in µm; anything else is an `InputError`."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: pixel size {value!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{what}: pixel size must be a positive number of micrometres, got {value!r}")
    return v


def load_run(run_dir: str | Path, pixel_size_um: float | None = None) -> SweepRun:
    """Read and validate RUN_DIR; `pixel_size_um` (µm, original sampling) overrides run.json."""
    path = Path(run_dir)
    override = check_pixel_size(pixel_size_um)
    if not path.is_dir():
        raise InputError(f"run folder {path} does not exist or is not a folder")
    meta = _read_run_json(path / "run.json")
    task = meta.get("task")
    if task not in TASKS:
        raise InputError(f"{path / 'run.json'}: task {task!r} is not one of {', '.join(TASKS)}")
    size = override if override is not None else check_pixel_size(meta.get("pixel_size_um"),
                                                                     f"{path / 'run.json'}: pixel_size_um")
    shape = meta.get("image_shape")
    if shape is not None:
        if not (isinstance(shape, (list, tuple)) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)):
            raise InputError(f"{path / 'run.json'}: image_shape {shape!r} is not [height, width] in pixels")
        shape = (int(shape[0]), int(shape[1]))
    record = check_tables(path, task)
    summary = _read_csv(path / "summary.csv", SUMMARY_REQUIRED, required=True)
    if record is not None:
        extra = sorted(set(summary["factor"]) - set(record.config.get("factors", [])))
        if extra:
            raise InputError(f"{path / 'summary.csv'}: factor(s) {', '.join(extra)} are not in the run record")
    per_image = _read_csv(path / "per_image.csv", ("factor", "image", "iou"), required=False)
    factors = tuple(str(f) for f in meta.get("factors") or summary["factor"].drop_duplicates())
    test = meta.get("test") if isinstance(meta.get("test"), list) else []
    return SweepRun(path, task, size, factors, shape, meta.get("dataset"), summary, per_image,
                    tuple(str(t) for t in test))


def _read_run_json(file: Path) -> dict:
    from rescale4dl_bmz.files.text_files import read_json_object

    return read_json_object(file, f"{file.parent} is not a sweep run folder: {file.name} is missing")


def _read_csv(file: Path, columns: tuple[str, ...], required: bool) -> pd.DataFrame | None:
    from rescale4dl_bmz.files.text_files import read_csv

    if not file.is_file():
        if required:
            raise InputError(f"{file.parent}: {file.name} is missing (has the sweep finished any factor?)")
        return None
    try:
        table = read_csv(file)
    except Exception as exc:  # parser errors of every kind
        raise InputError(f"{file}: cannot be read as CSV ({exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{file}: missing column(s) {', '.join(missing)}")
    try:
        table["factor"] = [parse_factor(f).name for f in table["factor"].astype(str)]
    except InputError as exc:
        raise InputError(f"{file}: {exc}") from None
    return table


# ----------------------------------------------------------------------------- the run record

RECORD_FILE = "record.json"
RECORD_FORMAT = 1
# Config keys that decide what the run folder holds (data, models, predictions, tables). The other
# keys (tau_s, criterion, tolerance, prune, export, out, task_runner, dask_*) only steer how the
# sweep runs or its last step, which every run redoes, so they may change between runs.
RESULT_KEYS = ("images", "masks", "task", "pixel_size_um", "channel", "factors", "mode", "crop", "label_style",
               "label_source", "test_images", "test_fraction", "seed", "training", "model")
TABLE_FILES = ("summary.csv", "per_image.csv", "per_object.csv", "selection.json")


class FileStamp(BaseModel):
    """An input file as it was when the run started: path, size and modification time."""

    model_config = ConfigDict(extra="forbid")
    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | Path) -> "FileStamp":
        st = Path(path).stat()
        return cls(path=str(Path(path).resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns)


class RunRecord(BaseModel):
    """What a run folder holds: written first by every sweep, checked by every later one.

    `tables` maps each table the sweep's last step wrote to its SHA-256; it is set only when a
    sweep ended, and dropped whenever the record changes, so `select`, `plan` and `export` can
    tell tables that belong to this record from stale or foreign ones.
    """

    model_config = ConfigDict(extra="forbid")
    format: int = RECORD_FORMAT
    code_version: str
    config: dict[str, Any]
    inputs: dict[str, FileStamp]
    created: str
    tables: dict[str, str] | None = None

    def differences(self, other: "RunRecord") -> list[str]:
        """The keys (config keys, `inputs: ...`, `code_version`) on which two records disagree."""
        diff = [k for k in RESULT_KEYS if self.config.get(k) != other.config.get(k)]
        if self.code_version != other.code_version:
            diff.append(f"code_version ({self.code_version} -> {other.code_version})")
        changed = sorted(k for k in set(self.inputs) | set(other.inputs) if self.inputs.get(k) != other.inputs.get(k))
        if changed:
            diff.append("inputs (" + ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "") + ")")
        return diff


def make_record(config, files: dict[str, str | Path]) -> RunRecord:
    """The record of a sweep about to run: its config (JSON) and a stamp of every input file."""
    from rescale4dl_bmz import __version__

    data = config.model_dump(mode="json")
    for key in ("images", "masks", "out", "model"):
        if data.get(key) is not None:
            data[key] = str(Path(data[key]).resolve())
    return RunRecord(code_version=__version__, config=data,
                     inputs={k: FileStamp.of(p) for k, p in sorted(files.items())},
                     created=time.strftime("%Y-%m-%dT%H:%M:%S"))


def read_record(run_dir: str | Path) -> RunRecord | None:
    """The folder's record, None when it has none; a damaged record is an `InputError`."""
    from rescale4dl_bmz.files.text_files import read_json_object

    path = Path(run_dir) / RECORD_FILE
    if not path.exists():
        return None
    try:
        return RunRecord.model_validate(read_json_object(path))
    except ValidationError as exc:
        raise InputError(f"{path}: not a valid run record ({describe_validation_error(exc)}); "
                         "start over with --restart") from None


def write_record(run_dir: str | Path, record: RunRecord) -> None:
    from rescale4dl_bmz.files.text_files import write_text

    write_text(Path(run_dir) / RECORD_FILE, record.model_dump_json(indent=2) + "\n")


def _is_run_folder(path: Path) -> bool:
    return (path / RECORD_FILE).is_file() or ((path / "run.json").is_file() and (path / "config.yaml").is_file())


def _clear(path: Path) -> None:
    """Empty a run folder (not the lock files of the sweep that holds it)."""
    import shutil

    from rescale4dl_bmz.files.run_lock import OWN_FILES

    for child in path.iterdir():
        if child.name in OWN_FILES:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _extension_problem(old: RunRecord, new: RunRecord, diff: list[str]) -> str | None:
    """Why `new` cannot extend `old` (None when it can: only factors added, same crop)."""
    from rescale4dl_bmz.factors import coarsest_step, parse_factors

    if diff != ["factors"]:
        return f"--extend only adds factors, but these differ too: {', '.join(k for k in diff if k != 'factors')}"
    before, after = old.config["factors"], new.config["factors"]
    dropped = [f for f in before if f not in after]
    if dropped:
        return f"--extend only adds factors, but {', '.join(dropped)} would be dropped"
    if coarsest_step(parse_factors(before)) != coarsest_step(parse_factors(after)):
        return ("the coarsest factor changes the crop of every image, so the finished factors would not "
                "match the new ones; start over with --restart")
    return None


def open_record(run_dir: str | Path, new: RunRecord, on_change: str = "refuse", dry_run: bool = False) -> RunRecord:
    """Compare the folder's record with the sweep's and write the record first, before any output.

    A folder with another record is refused (`InputError` naming the differing keys) unless
    `on_change` is "restart" (empty the folder, start over) or "extend" (only factors added, with
    the same crop). A non-empty folder without a record is refused: it is not a run folder.
    `dry_run` only checks (nothing is written or deleted): the sweep does so before it takes the lock.
    """
    from rescale4dl_bmz.files.run_lock import OWN_FILES

    if on_change not in ON_CHANGE:
        raise InputError(f"on_change must be one of {', '.join(ON_CHANGE)}, got {on_change!r}")
    path = Path(run_dir)
    others = [c.name for c in path.iterdir() if c.name not in OWN_FILES] if path.is_dir() else []
    if others and not _is_run_folder(path):
        raise InputError(f"--out {path} holds other files ({', '.join(sorted(others)[:3])}, ...) and no run record: "
                         "choose an empty or new folder")
    try:
        old = read_record(path) if others else None
    except InputError:
        if on_change != "restart":
            raise
        old = None
    if others and on_change == "restart":
        if dry_run:
            return new
        log.warning("%s: --restart, removing the previous run", path)
        _clear(path)
        old = None
    elif others and old is None:
        raise InputError(f"{path} holds a run without a record ({RECORD_FILE}; an older version wrote it): "
                         "start over with --restart or choose another --out")
    if old is not None:
        diff = old.differences(new)
        if diff:
            if on_change != "extend":
                raise InputError(f"{path} holds a run with a different record ({path / RECORD_FILE}); differing: "
                                 f"{'; '.join(diff)}. Use another --out, --restart to start over"
                                 + (", or --extend to add factors" if diff == ["factors"] else ""))
            problem = _extension_problem(old, new, diff)
            if problem:
                raise InputError(f"{path}: cannot extend this run: {problem}")
            log.info("%s: extending the run with factor(s) %s", path,
                     " ".join(f for f in new.config["factors"] if f not in old.config["factors"]))
        keep = not diff and all(old.config.get(k) == new.config.get(k) for k in set(old.config) | set(new.config)
                                if k not in ("out",))
        new = new.model_copy(update={"created": old.created, "tables": old.tables if keep else None})
    if not dry_run:
        write_record(path, new)
    return new


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def vouch_tables(run_dir: str | Path) -> RunRecord | None:
    """After the sweep's last step: the record vouches for the tables it wrote (by SHA-256)."""
    path = Path(run_dir)
    record = read_record(path)
    if record is None:
        return None
    tables = {name: _sha256(path / name) for name in TABLE_FILES if (path / name).is_file()}
    record = record.model_copy(update={"tables": tables})
    write_record(path, record)
    return record


def check_tables(run_dir: str | Path, task: str | None = None) -> RunRecord | None:
    """Refuse a run folder whose record and tables disagree (an unfinished, mixed or edited run)."""
    from rescale4dl_bmz.files.run_lock import describe_holder, held_here, is_locked, read_holder

    path = Path(run_dir)
    record = read_record(path)
    if record is None or held_here(path):
        return record  # assembled by hand (or by an older version), or the sweep exporting its own tables
    if record.tables is None:
        busy = is_locked(path)
        raise InputError(f"{path}: its tables do not belong to its record ({RECORD_FILE}): "
                         + (f"a sweep is writing into it ({describe_holder(read_holder(path))})" if busy else
                            "the last sweep into it did not finish; rerun it"))
    for name, digest in record.tables.items():
        file = path / name
        if not file.is_file() or _sha256(file) != digest:
            raise InputError(f"{file}: does not match the run record {path / RECORD_FILE} (changed after the "
                             "sweep, or written by another run); rerun the sweep")
    if task is not None and record.config.get("task") != task:
        raise InputError(f"{path / 'run.json'}: task {task!r} differs from the record's {record.config.get('task')!r}")
    return record
