"""Process-wide settings, in one place: each is a named function that an entry point calls.

Nothing here runs at import. What each one changes lives for the whole process (environment
variables read by libraries at their import, the working directory, the parent-death signal),
so they are called once, early, by `rescale4dl` commands, the sweep flow (also as a Prefect
deployment, flows/sweep_flow.py), the training and ImageJ child processes, and the tests. The
logging setup lives beside this module, in `rescale4dl_bmz.process.logs`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import tempfile
from pathlib import Path
from typing import Iterator


def use_tensorflow_keras() -> None:
    """Keras 3 on TensorFlow, TensorFlow's C++ info lines muted; before Keras is imported.

    Set unconditionally: a user's ``KERAS_BACKEND=torch`` (or bioimageio.core picking torch for
    Keras weights) would otherwise build our networks on another backend.
    """
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def configure_prefect(results_dir: str | Path) -> None:
    """Offline, quiet Prefect settings with results under `results_dir`; before `prefect` is imported."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "rescale4dl_bmz")
    os.environ.setdefault("PREFECT_UI_ENABLED", "true")
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(prefect_results_path(results_dir))
    os.environ.setdefault("MPLBACKEND", "Agg")
    use_tensorflow_keras()


def prefect_results_path(results_dir: str | Path) -> Path:
    """Where Prefect keeps the task results of a run in `results_dir`: ``results_dir/.prefect/results``."""
    return Path(results_dir).resolve() / ".prefect" / "results"


@functools.cache
def default_file_mode() -> int:
    """Permissions of a new file under this process's umask (read once; mkstemp files are 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """`preexec_fn` of a child process: the kernel kills it with SIGKILL when its parent dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def private_working_directory(path: str | Path | None = None) -> Iterator[Path]:
    """Run a block in `path` (a fresh temporary folder when None), then return to the previous one.

    bioimageio.core unpacks TensorFlow weights into the working directory. Changing it is
    process-wide: callers hold no other thread that depends on the working directory.
    """
    old = Path.cwd()
    with contextlib.ExitStack() as stack:
        if path is None:
            path = stack.enter_context(tempfile.TemporaryDirectory(prefix="rescale4dl_bmz_"))
        os.chdir(path)
        try:
            yield Path(path)
        finally:
            os.chdir(old)
