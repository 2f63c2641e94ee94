"""The process's logging: one root handler that writes above the progress bar, library loggers
turned down, and TensorFlow and Keras imported with their start-up lines muted.

Every logger of this package is named under `rescale4dl_bmz` (``logging.getLogger(__name__)``).
Without `--verbose`, log lines that a microscopist cannot act on are dropped: Prefect's per-task
state lines (the Prefect UI keeps them), the training child's tracebacks (the failure summary
names the cause and the log), TensorFlow's C++ start-up lines, Keras progress bars and
retracing warnings. Entry points call `setup_logging` once; nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys

from rescale4dl_bmz.process.settings import use_tensorflow_keras

# The TensorFlow worker's output, relayed line by line (rescale4dl_bmz.sweep.tensorflow_worker).
TRAINING_LOGGER = "rescale4dl_bmz.sweep.tensorflow_worker"
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
        if name == TRAINING_LOGGER and (msg[:1].isspace() or msg.startswith(("Traceback", "patch size"))
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
    """Import TensorFlow and Keras (on TensorFlow) with their start-up lines muted; no Keras progress bars."""
    use_tensorflow_keras()
    with muted_stderr_fd():
        import keras
        import tensorflow as tf  # noqa: F401
    keras.utils.disable_interactive_logging()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
