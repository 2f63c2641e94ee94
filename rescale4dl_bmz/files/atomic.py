"""Atomic file writes: a temporary file beside the target, renamed onto it only on success.

An interrupted run therefore never leaves half a file behind; every writer of this package
(tables, JSON, TIFFs, figures, packages, ImageJ's outputs) goes through `atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.process.settings import default_file_mode


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary file exists (empty) when the block starts; `suffix` ends its name (ImageJ
    insists on `.tif`). The result gets the usual permissions of a new file, not mkstemp's 0600.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; cannot write a file there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, default_file_mode())
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is None or str(exc.filename) == str(tmp_path):  # name the file the user knows
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
