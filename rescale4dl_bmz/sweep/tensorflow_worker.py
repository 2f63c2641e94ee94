"""The TensorFlow worker: one long-lived process that trains, predicts and exports factor after
factor, so a sweep imports TensorFlow once (per machine, or per Dask worker) instead of once per
factor and once more in the parent.

Why a separate process at all: TensorFlow and Keras keep per-process state, and the parent (a
CLI, Prefect, Dask, a notebook) should stay light and never depend on it. Why it is safe to
reuse: before every job the worker clears Keras's session, and every training seeds Python,
NumPy and TensorFlow again with op determinism on (`training.reproducible`), so a model trained
as the worker's fifth job has the same weights, bit for bit, as one trained by a fresh process
(tests/test_tensorflow_worker.py).

Protocol: the worker imports TensorFlow and says so (a first reply with the import time); then
one JSON job per line on its stdin. Everything the worker prints (our log
lines, TensorFlow's, a traceback) goes to the job's log file, and the lines a person can act on
are relayed to this process's log, until a line starting with `REPLY_MARK` carries the JSON
reply. A worker that dies (killed, out of memory) fails the running job with its exit code and
the next job starts a fresh one. The worker dies with its parent (Linux).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Sequence

from rescale4dl_bmz.errors import InputError

log = logging.getLogger(__name__)

REPLY_MARK = "\x1erescale4dl-worker-reply "
# TensorFlow start-up and tracing lines nobody can act on: kept in the log file, not relayed
_NOISE = ("NodeDef mentions attribute", "retracing", "cpu_feature_guard", "To enable the following instructions",
          "absl::InitializeLog", "Memory patch applied", "oneDNN custom operations",
          "━━━━")  # a Keras progress bar (a library's thread may still print one)
_ERROR_LINE = re.compile(r"^\s*[\w.]*(Error|Exception|Failed|Interrupt)\b[^:]*:")


class WorkerJobFailed(RuntimeError):
    """A job failed in the worker; `cause` is its error line, `log` the job's whole output."""

    def __init__(self, cause: str, log: str):
        self.cause, self.log = cause, log
        super().__init__(f"{cause} (full log: {log})")

    def __reduce__(self):
        return type(self), (self.cause, self.log)


class WorkerInputError(WorkerJobFailed, InputError):
    """The job refused its input (an `InputError` in the worker): exit code 2 on the command line,
    the message naming the file and the problem, as if the parent had found it."""


class TensorFlowWorker:
    """Parent side: starts the worker on the first job, sends jobs one at a time (thread-safe)."""

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.started = 0  # how many worker processes this client has started
        self.startup_s: float | None = None  # the last start's TensorFlow import, in seconds

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def train(self, images: Sequence[Path], masks: Sequence[Path], config, out_dir: str | Path,
              log_file: str | Path) -> dict:
        """Train `config` (a TrainConfig) on these files into `out_dir`."""
        return self.run({"op": "train", "images": [str(p) for p in images], "masks": [str(p) for p in masks],
                         "config": config.model_dump(mode="json"), "out": str(out_dir)}, log_file)

    def predict(self, model_dir: str | Path, images: Sequence[Path], outputs: Sequence[Path],
                pixel_size_um: float | None, log_file: str | Path) -> dict:
        """Segment `images` with the model in `model_dir` into `outputs` (TIFFs at `pixel_size_um`);
        returns the first pass's wall time and the warm inference time of the first image."""
        return self.run({"op": "predict", "model": str(model_dir), "images": [str(p) for p in images],
                         "outputs": [str(p) for p in outputs], "pixel_size_um": pixel_size_um}, log_file)

    def halve(self, factors: Sequence[dict], rounds: int, margin: float, log_file: str | Path) -> dict:
        """Successive halving (`models.rounds.train_in_rounds`) over `factors`: dicts of "factor",
        "images", "masks" (paths), "config" (a TrainConfig) and "out" (its model folder)."""
        jobs = [{"factor": f["factor"], "images": [str(p) for p in f["images"]], "masks": [str(p) for p in f["masks"]],
                 "config": f["config"].model_dump(mode="json"), "out": str(f["out"])} for f in factors]
        return self.run({"op": "halve", "factors": jobs, "rounds": rounds, "margin": margin}, log_file)

    def export(self, run_dir: str | Path, factor: str, zip_path: str | Path, metadata, log_file: str | Path) -> str:
        """`bioimageio.export.export_package` of `factor`'s model, built and tested in the worker."""
        job = {"op": "export", "run_dir": str(run_dir), "factor": factor, "zip": str(zip_path),
               "metadata": None if metadata is None else metadata.model_dump(mode="json")}
        return self.run(job, log_file)["package"]

    def run(self, job: dict, log_file: str | Path) -> dict:
        """Send one job; relay its output to `log_file` (and the log); its result, or WorkerJobFailed."""
        log_file = Path(log_file)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(log_file, "w") as full:
            if self.pid is None:
                self._start()
                self.startup_s = self._reply(full, log_file)["startup_s"]  # TensorFlow imported
            try:
                self._proc.stdin.write(json.dumps(job) + "\n")
                self._proc.stdin.flush()
            except BrokenPipeError:
                pass  # the worker is gone: reading its output reaches the end and names the exit code
            return self._reply(full, log_file)

    def _reply(self, full, log_file: Path) -> dict:
        """Relay the worker's output until its reply line; the reply's result, or WorkerJobFailed."""
        proc = self._proc
        lines: list[str] = []
        for line in proc.stdout:
            if line.startswith(REPLY_MARK):
                reply = json.loads(line[len(REPLY_MARK):])
                if reply["ok"]:
                    return reply["result"]
                failed = WorkerInputError if reply.get("input") else WorkerJobFailed
                raise failed(reply["error"], str(log_file))
            full.write(line)
            full.flush()
            line = line.rstrip()
            if line and not any(n in line for n in _NOISE):
                log.info("%s", line)
                lines = (lines + [line])[-200:]
        code = proc.wait()
        self._proc = None
        raise WorkerJobFailed(_error_line(lines, code), str(log_file))

    def _start(self) -> None:
        from rescale4dl_bmz.process.settings import die_with_parent

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the worker sets its Keras backend itself (`serve`)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rescale4dl_bmz.sweep.tensorflow_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        self.started += 1

    def close(self, timeout_s: float = 10.0) -> None:
        """End the worker: close its input (it exits after the running job), kill it after `timeout_s`."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            proc.stdout.close()


def _error_line(lines: list[str], code: int) -> str:
    """The worker's own summary of what went wrong: its last `SomeError: message` line."""
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line.strip()
    return f"the TensorFlow worker exited with code {code}" + (f"; last output: {lines[-1]}" if lines else "")


_shared: TensorFlowWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> TensorFlowWorker:
    """This process's worker (one per process: the sweep's parent, or each Dask worker process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TensorFlowWorker()
            atexit.register(close_shared_worker)
        return _shared


def close_shared_worker() -> None:
    """End this process's worker, if one was started (end of a sweep, interpreter exit)."""
    if _shared is not None:
        _shared.close()


# ----------------------------------------------------------------------------- the worker's side

def _fresh_session() -> None:
    """Drop the previous job's graphs, layers and name counters (seeds are set by each job)."""
    import gc

    import keras

    keras.backend.clear_session(free_memory=True)
    keras.utils.disable_interactive_logging()  # clearing the session resets it: no progress bars
    gc.collect()


def _train(job: dict) -> dict:
    from rescale4dl_bmz.files.images import read_image, read_mask
    from rescale4dl_bmz.models import train_model
    from rescale4dl_bmz.models.config import config_from_dict

    config = config_from_dict(job["config"], "the training job")
    images = [read_image(p) for p in job["images"]]
    masks = [read_mask(p) for p in job["masks"]]
    train_model(images, masks, config, job["out"], names=[Path(p).stem for p in job["images"]])
    return {}


def _halve(job: dict) -> dict:
    from rescale4dl_bmz.decide.halving import halving_rule
    from rescale4dl_bmz.files.images import read_image, read_mask
    from rescale4dl_bmz.models.config import config_from_dict
    from rescale4dl_bmz.models.rounds import FactorRun, train_in_rounds

    runs = [FactorRun(f["factor"], [read_image(p) for p in f["images"]], [read_mask(p) for p in f["masks"]],
                      config_from_dict(f["config"], f"the halving job ({f['factor']})"), Path(f["out"]),
                      [Path(p).stem for p in f["images"]]) for f in job["factors"]]
    rounds, margin = job["rounds"], job["margin"]
    decision = train_in_rounds(runs, rounds, *halving_rule(rounds, margin))
    return {**decision, "margin": margin}


def _predict(job: dict) -> dict:
    from rescale4dl_bmz.files.images import read_image, write_tiff
    from rescale4dl_bmz.models import load_model
    from rescale4dl_bmz.models.prediction import warm_inference_seconds

    model = load_model(job["model"])
    t0 = time.perf_counter()
    first = None
    for src, dst in zip(job["images"], job["outputs"]):
        image = read_image(src)
        first = image if first is None else first
        write_tiff(dst, model.predict(image), job["pixel_size_um"])
    first_pass = time.perf_counter() - t0
    return {"first_pass_s": first_pass, "warm_s": warm_inference_seconds(model.predict, first)}


def _export(job: dict) -> dict:
    from rescale4dl_bmz.bioimageio.export import export_package
    from rescale4dl_bmz.bioimageio.export.metadata import PackageMetadata

    metadata = None if job["metadata"] is None else PackageMetadata.model_validate(job["metadata"])
    package = export_package(job["run_dir"], job["factor"], job["zip"], variant="bioimageio", metadata=metadata)
    return {"package": str(package)}


_JOBS = {"train": _train, "halve": _halve, "predict": _predict, "export": _export}


def serve(stdin=None, stdout=None) -> int:
    """The worker's loop: one job per input line, one reply line per job, until the input closes."""
    from rescale4dl_bmz.errors import one_line
    from rescale4dl_bmz.process.settings import use_tensorflow_keras

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    use_tensorflow_keras()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=stdout, force=True)
    t0 = time.perf_counter()
    import keras  # TensorFlow too: the one import of a sweep

    for noisy in ("absl", "tensorflow"):  # Keras's progress lines, without interactive logging (each job)
        logging.getLogger(noisy).setLevel(logging.WARNING)

    _send(stdout, {"ok": True, "result": {"startup_s": time.perf_counter() - t0}})
    for line in stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            _fresh_session()
            reply = {"ok": True, "result": _JOBS[job["op"]](job)}
        except Exception as exc:  # the job failed, the worker serves the next one
            traceback.print_exc(file=stdout)
            bad_input = isinstance(exc, InputError)
            reply = {"ok": False, "input": bad_input, "error": str(exc).strip() if bad_input else one_line(exc)}
        _send(stdout, reply)
    return 0


def _send(stdout, reply: dict) -> None:
    stdout.flush()
    sys.stderr.flush()
    stdout.write(REPLY_MARK + json.dumps(reply) + "\n")
    stdout.flush()


if __name__ == "__main__":
    sys.exit(serve())
