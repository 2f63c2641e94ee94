"""Text files: plain text, JSON objects and CSV tables, written atomically (`files.atomic`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.atomic import atomic_path


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json_object(path: str | Path, missing: str | None = None) -> dict:
    """A JSON file holding an object; `missing` is the message when the file is absent."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(missing or f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def write_csv(path: str | Path, table) -> Path:
    """A DataFrame as CSV, atomically (full float precision, NaN as an empty cell)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


# columns that hold names: read as text, so image "00003" stays "00003" and "NA" stays "NA"
NAME_COLUMNS = ("image", "name", "factor", "grid", "status", "source", "task", "stage")


def read_csv(path: str | Path):
    """A table written by `write_csv`: name columns as strings, empty cells as NaN."""
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: str for c in NAME_COLUMNS if c in header}, keep_default_na=False,
                       na_values=[""])


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
