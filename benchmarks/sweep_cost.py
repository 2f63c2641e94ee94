"""Cost of successive halving against the exhaustive sweep, on the shared real data sets.

For each data set in ../shared/data (celegans_bbbc010, ecoli_colicoords, saureus_crop) the same
small semantic sweep runs with `schedule: exhaustive` and with `schedule: halving`. Fair by
construction: every sweep runs in a fresh Python process (each pays the imports, the Prefect
start and the TensorFlow worker's start), and the order alternates (exhaustive, halving, halving,
exhaustive, ...) so neither profits from warm disk caches. Prints per data set the
training-compute ratio halving/exhaustive (optimiser steps x patch pixels, summed over factors,
and the summed training wall time), the wall-time ratio of the whole sweeps, and whether both
select the same factor.

    python benchmarks/sweep_cost.py [--steps 16] [--repeats 1] [--factors og ds2 ds4 ds8] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATASETS = ("celegans_bbbc010", "ecoli_colicoords", "saureus_crop")
SCHEDULES = ("exhaustive", "halving")


def one_sweep(data: Path, out: Path, schedule: str, steps: int, factors: list[str]) -> dict:
    """Run one sweep in this process (the child's side) and return its costs and choice."""
    import pandas as pd

    from rescale4dl_bmz.errors import InputError
    from rescale4dl_bmz.sweep.config import make_sweep_config
    from rescale4dl_bmz.sweep.flow import run_sweep

    training = {"architecture": {"kind": "unet", "depth": 2, "base_filters": 8}, "steps": steps,
                "steps_per_epoch": max(1, steps // 4), "batch_size": 2, "learning_rate": 1e-3}
    try:
        config = make_sweep_config(images=data / "images", masks=data / "masks", out=out, task="semantic",
                                   factors=factors, export=False, training=training, schedule=schedule)
        result = run_sweep(config)
    except InputError as exc:
        return {"skipped": str(exc)}
    rows = pd.read_csv(out / "summary.csv").drop_duplicates("factor")
    return {"pixels_seen": float(rows["pixels_seen"].fillna(0).sum()),
            "train_s": float(rows["wall_time_s"].fillna(0).sum()),
            "steps": {r.factor: int(r.steps) for r in rows.itertuples() if r.steps == r.steps},
            "stopped": sorted(rows.loc[rows["status"] == "stopped", "factor"]), "chosen": result.get("chosen")}


def run_child(data: Path, out: Path, schedule: str, steps: int, factors: list[str]) -> dict:
    """One sweep in a fresh interpreter; its wall time includes every start-up cost."""
    cmd = [sys.executable, __file__, "--child", schedule, "--data", str(data), "--out", str(out),
           "--steps", str(steps), "--factors", *factors]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not last:
        raise RuntimeError(f"{schedule} sweep on {data.name} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(last[-1]), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16, help="training steps per factor (default 16; more: closer "
                                                               "to real training)")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of sweeps per data set (default 1)")
    parser.add_argument("--factors", nargs="+", default=["og", "ds2", "ds4", "ds8"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--out", help="keep the sweeps here (default: a temporary folder)")
    parser.add_argument("--child", choices=SCHEDULES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_sweep(Path(args.data), Path(args.out), args.child, args.steps, args.factors)))
        return
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sweep_cost_"))
    lines = []
    turn = 0
    for name in args.datasets:
        runs: dict[str, list[dict]] = {s: [] for s in SCHEDULES}
        skipped = None
        for rep in range(args.repeats):
            for schedule in (SCHEDULES if turn % 2 == 0 else SCHEDULES[::-1]):  # E H, H E, E H, ...
                res = run_child(SHARED / name, root / f"{name}-{schedule}-{rep}", schedule, args.steps, args.factors)
                skipped = res.get("skipped")
                runs[schedule].append(res)
                print(f"{name} {schedule} #{rep + 1}: {json.dumps(res)}", flush=True)
            turn += 1
            if skipped:
                break
        if skipped:
            lines.append(f"{name:18s} skipped: {skipped}")
            continue
        mean = {s: {k: sum(r[k] for r in runs[s]) / len(runs[s]) for k in ("pixels_seen", "train_s", "wall_s")}
                for s in SCHEDULES}
        ex, hv = mean["exhaustive"], mean["halving"]
        chosen = {s: {r["chosen"] for r in runs[s]} for s in SCHEDULES}
        same = chosen["exhaustive"] == chosen["halving"] and len(chosen["exhaustive"]) == 1
        lines.append(f"{name:18s} compute (steps x pixels) {hv['pixels_seen'] / ex['pixels_seen']:.2f}  "
                     f"train time {hv['train_s'] / ex['train_s']:.2f}  wall {hv['wall_s'] / ex['wall_s']:.2f}  "
                     f"stopped {','.join(runs['halving'][-1]['stopped']) or '-'}  "
                     f"same factor: {'yes' if same else 'NO'} ({'/'.join(sorted(chosen['exhaustive']))} vs "
                     f"{'/'.join(sorted(chosen['halving']))})")
    print(f"\nhalving / exhaustive, {args.steps} steps per factor, factors {' '.join(args.factors)}, "
          f"{args.repeats} pair(s) per data set, order alternated, each sweep in a fresh process:")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
