"""Where a demo sweep's wall time goes, as shares, so the next regression is visible.

Runs the README's demo sweep (semantic, og ds2 ds4 ds8, the demo's tiny budgets) in a fresh
process with timers around each part, and a plain `import tensorflow` in another fresh process
first, as the baseline of the same run. Parts:

    python start + parent imports   interpreter, rescale4dl_bmz, Prefect, pandas, matplotlib
    check data and plan             reading and checking the data before any work
    Prefect temporary server        run_sweep's time not spent in any stage (server start, task runs)
    rescale                         the data stage of every factor
    TensorFlow worker start         the worker's one `import tensorflow`
    build, tracing, RF probe, save  training time that is not steady training
    steady training                 optimiser steps at the steady per-step speed (epochs after the first)
    worker jobs overhead            reading the data and job hand-over in the worker
    predict                         test images through the trained model (in the worker)
    evaluate                        metrics per factor
    export                          the bioimage.io package, built and tested (in the worker)
    report                          tables, selection, figures, report.html

    python benchmarks/sweep_breakdown.py [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import functools, json, sys, time
t_top = time.time()
t0 = time.perf_counter()
from pathlib import Path
import matplotlib, pandas, prefect  # noqa: F401  (what a sweep's parent imports anyway)
from rescale4dl_bmz.process.logs import setup_logging
from rescale4dl_bmz.process.settings import use_tensorflow_keras
from rescale4dl_bmz.sweep import finish, flow, prepare, stages
from rescale4dl_bmz.sweep.config import make_sweep_config
from rescale4dl_bmz.files.demo_data import write_demo_dataset
from rescale4dl_bmz.cli.demo import DEMO_FACTORS, DEMO_TRAINING
from rescale4dl_bmz.sweep import tensorflow_worker as worker
setup_logging(False)
use_tensorflow_keras()
times = {"imports": time.perf_counter() - t0}
spans = []

def timed(module, name, part):
    fn = getattr(module, name)
    @functools.wraps(fn)  # Prefect reads the signature (task run names use the parameters)
    def wrapper(*args, **kwargs):
        s = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.append((part, s, time.perf_counter()))
    setattr(module, name, wrapper)

timed(prepare, "plan_sweep", "check data and plan")
for stage, part in (("stage_data", "rescale"), ("stage_train", "train"), ("stage_predict", "predict"),
                    ("stage_evaluate", "evaluate")):
    timed(stages, stage, part)
timed(finish, "export_chosen", "export")
timed(flow, "run_sweep", "run_sweep")
out = Path(sys.argv[1])
images, masks = write_demo_dataset(out.parent / (out.name + "_data"))
config = make_sweep_config(images=images, masks=masks, out=out, task="semantic", factors=DEMO_FACTORS,
                           test_images=["q4"], training=DEMO_TRAINING["semantic"])
summary = flow.run_sweep(config)
w = worker.shared_worker()
json.dump({"t_top": t_top, "times": times, "spans": spans, "worker_startup_s": w.startup_s,
           "workers_started": w.started, "parent_imported_tensorflow": "tensorflow" in sys.modules,
           "n_done": summary.get("n_done"), "failed": summary.get("failed")},
          open(out / "breakdown.json", "w"))
"""


def plain_tensorflow_import() -> float:
    """Seconds for `import tensorflow` in a fresh interpreter (minus the bare interpreter's start)."""
    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0
    return run("import tensorflow") - run("pass")


def training_split(model_dir: Path) -> tuple[float, float]:
    """(steady training, everything else) seconds of one training, from its epoch log and cost."""
    cost = json.loads((model_dir / "cost.json").read_text())
    rows = list(csv.DictReader(open(model_dir / "training_log.csv")))
    wall = float(cost["wall_time_s"])
    if len(rows) < 2:
        return 0.0, wall
    first, last = rows[0], rows[-1]
    per_step = (float(last["time_s"]) - float(first["time_s"])) / max(int(last["steps"]) - int(first["steps"]), 1)
    steady = min(per_step * int(last["steps"]), wall)
    return steady, wall - steady


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    args = ap.parse_args()
    tf_import = plain_tensorflow_import()
    with tempfile.TemporaryDirectory(prefix="rescale4dl_breakdown_") as tmp:
        out = args.out or Path(tmp) / "run"
        t_launch = time.time()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, str(out)], check=True)
        total = time.perf_counter() - t0
        record = json.loads((out / "breakdown.json").read_text())
        parts: dict[str, float] = {}
        for part, start, end in record["spans"]:
            parts[part] = parts.get(part, 0.0) + end - start
        steady = other = 0.0
        for model in sorted(out.glob("*/model")):
            s, o = training_split(model)
            steady, other = steady + s, other + o
        startup = record["worker_startup_s"] or 0.0
        inside = sum(parts.get(p, 0.0) for p in ("check data and plan", "rescale", "train", "predict", "evaluate"))
        report_s = 0.0
        # the finish task: everything after the last evaluate span up to the end of run_sweep, minus export
        evaluate_ends = [end for part, _, end in record["spans"] if part == "evaluate"]
        run_end = max(end for part, _, end in record["spans"] if part == "run_sweep")
        if evaluate_ends:
            report_s = run_end - max(evaluate_ends) - parts.get("export", 0.0)
        rows = [
            ("python start + parent imports", (record["t_top"] - t_launch) + record["times"]["imports"]),
            ("check data and plan", parts.get("check data and plan", 0.0)),
            ("Prefect temporary server", parts["run_sweep"] - inside - report_s - parts.get("export", 0.0)),
            ("rescale", parts.get("rescale", 0.0)),
            ("TensorFlow worker start", startup),
            ("build, tracing, RF probe, save", other),
            ("steady training", steady),
            ("worker jobs overhead", parts.get("train", 0.0) - startup - steady - other),
            ("predict", parts.get("predict", 0.0)),
            ("evaluate", parts.get("evaluate", 0.0)),
            ("export", parts.get("export", 0.0)),
            ("report", report_s),
        ]
        accounted = sum(s for _, s in rows)
        rows.append(("unaccounted (process exit, data writing)", total - accounted))
        print(f"demo sweep: {total:.1f} s wall, {record['n_done']} factors done, failed: {record['failed'] or 'none'}")
        print(f"baseline: plain `import tensorflow` in a fresh process: {tf_import:.2f} s "
              f"(the sweep's total is {total / tf_import:.1f}x that)")
        print(f"TensorFlow imports during the sweep: {record['workers_started']} worker process(es)"
              f" + parent: {'yes' if record['parent_imported_tensorflow'] else 'no'}")
        print()
        print(f"{'part':<42}{'seconds':>9}{'share':>8}")
        for name, seconds in rows:
            print(f"{name:<42}{seconds:>9.2f}{seconds / total:>8.1%}")


if __name__ == "__main__":
    main()
