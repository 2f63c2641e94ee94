"""One training in a fresh Python process, so a model never depends on what the calling process
did before (TensorFlow and Keras keep per-process state that seeds alone do not reset: a Dask
worker that trained one factor would train the next one differently from a sequential run).

The parent writes a small JSON job (image and mask files, the resolved `TrainConfig`, the output
folder), runs `python -m rescale4dl_bmz.models.train_process JOB.json`, and relays the child's log lines.
The child dies with its parent (Linux), so a killed sweep leaves no training behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from rescale4dl_bmz.process.settings import die_with_parent, use_tensorflow_keras

log = logging.getLogger(__name__)

_NOISE = ("NodeDef mentions attribute", "retracing", "cpu_feature_guard", "To enable the following instructions",
          "absl::InitializeLog", "Memory patch applied", "oneDNN custom operations")


def train_in_subprocess(images: Sequence[Path], masks: Sequence[Path], config, out_dir: str | Path,
                        log_file: str | Path | None = None) -> None:
    """Train `config` (a TrainConfig) on these files into `out_dir`, in a fresh process.

    The child's whole output goes to `log_file` (default: `train.log` beside `out_dir`); a failed
    training raises `TrainingFailed` with the child's own error line as the cause.
    """
    job = {"images": [str(p) for p in images], "masks": [str(p) for p in masks],
           "config": config.model_dump(mode="json"), "out": str(out_dir)}
    log_file = Path(log_file) if log_file else Path(out_dir).parent / "train.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rescale4dl_train_") as tmp, open(log_file, "w") as full:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}  # the child sets Keras' backend
        proc = subprocess.Popen([sys.executable, "-m", "rescale4dl_bmz.models.train_process", str(job_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            full.write(line)
            line = line.rstrip()
            if line and not any(n in line for n in _NOISE):
                log.info("%s", line)
                lines = (lines + [line])[-200:]
        if proc.wait() != 0:
            raise TrainingFailed(_error_line(lines, proc.returncode), str(log_file))


class TrainingFailed(RuntimeError):
    """The training process failed; `cause` is its error line, `log` its whole output."""

    def __init__(self, cause: str, log: str):
        self.cause, self.log = cause, log
        super().__init__(f"{cause} (full log: {log})")

    def __reduce__(self):
        return type(self), (self.cause, self.log)


def _error_line(lines: list[str], code: int) -> str:
    """The child's own summary of what went wrong: its last `SomeError: message` line."""
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line.strip()
    return f"the training process exited with code {code}" + (f"; last output: {lines[-1]}" if lines else "")


_ERROR_LINE = re.compile(r"^\s*[\w.]*(Error|Exception|Failed|Interrupt)\b[^:]*:")


def main(job_file: str) -> int:
    """Child side: read the job, load the arrays, train."""
    use_tensorflow_keras()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from rescale4dl_bmz.files.dataset import read_image, read_mask
    from rescale4dl_bmz.models import train_model
    from rescale4dl_bmz.models.config import config_from_dict

    job = json.loads(Path(job_file).read_text())
    config = config_from_dict(job["config"], job_file)
    images = [read_image(p) for p in job["images"]]
    masks = [read_mask(p) for p in job["masks"]]
    train_model(images, masks, config, job["out"], names=[Path(p).stem for p in job["images"]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
