"""Cost of pruning: the same small sweep run exhaustively and with `prune: true`.

`advise` predicts some factors hopeless (objects narrower than ~3 px or wider than ~2x the
receptive field); pruning skips them. Prints the cost ratio (total training time, wall time) and
whether both sweeps select the same factor.

    python benchmarks/sweep_cost.py [--steps 40] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from rescale4dl_bmz.sweep.config import make_sweep_config
from rescale4dl_bmz.files.demo_data import write_demo_dataset
from rescale4dl_bmz.sweep.flow import run_sweep

FACTORS = ["og", "ds2", "ds4", "ds8", "ds16"]


def run(data: tuple[Path, Path], out: Path, prune: bool, steps: int) -> dict:
    images, masks = data
    config = make_sweep_config(images=images, masks=masks, out=out, task="semantic", factors=FACTORS,
                               test_images=["q4"], prune=prune, export=False,
                               training={"architecture": {"kind": "unet", "depth": 2, "base_filters": 8},
                                         "steps": steps, "steps_per_epoch": max(1, steps // 2), "batch_size": 2,
                                         "learning_rate": 1e-3})
    t0 = time.perf_counter()
    result = run_sweep(config)
    wall = time.perf_counter() - t0
    summary = pd.read_csv(out / "summary.csv")
    trained = summary.drop_duplicates("factor")
    return {"wall_s": wall, "train_s": float(trained["wall_time_s"].fillna(0).sum()),
            "pixels_seen": float(trained["pixels_seen"].fillna(0).sum()),
            "factors_trained": int((trained["status"] == "done").sum()),
            "pruned": sorted(result.get("pruned", {})), "chosen": result.get("chosen")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per factor")
    parser.add_argument("--out", help="keep the two sweeps here (default: a temporary folder)")
    args = parser.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sweep_cost_"))
    data = write_demo_dataset(root / "data")
    full = run(data, root / "exhaustive", False, args.steps)
    pruned = run(data, root / "pruned", True, args.steps)
    print(json.dumps({"exhaustive": full, "pruned": pruned}, indent=2))
    print(f"pruned sweep trained {pruned['factors_trained']} of {full['factors_trained']} factors "
          f"(skipped {', '.join(pruned['pruned']) or 'none'})")
    print(f"training time ratio pruned/exhaustive: {pruned['train_s'] / full['train_s']:.2f}")
    print(f"pixels seen ratio pruned/exhaustive:   {pruned['pixels_seen'] / full['pixels_seen']:.2f}")
    print(f"wall time ratio pruned/exhaustive:     {pruned['wall_s'] / full['wall_s']:.2f}")
    same = full["chosen"] == pruned["chosen"]
    print(f"same factor selected: {'yes' if same else 'NO'} ({full['chosen']} vs {pruned['chosen']})")


if __name__ == "__main__":
    main()
