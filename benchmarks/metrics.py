"""Benchmark: instance evaluation of the S. aureus reference pairs against `stardist.matching`.

    .venv/bin/python benchmarks/metrics.py [--factor ds2] [--repeat 3] [--json] [--check]

For every pair of ../shared/data/reference/saureus_instance/<factor> (six pairs, about 140-640
cells each) it times, in one run and on the same arrays:

- `stardist.matching.matching(gt, pred, thresh=0.5)` (the reference; warmed up first, so its
  numba compilation is not counted),
- `rescale4dl_bmz.metrics.match_instances` (the same statistics),
- the per-pair instance metrics of our tables without morphology: `match_instances` plus the
  compatibility crop IoU (`crop_iou_rescale4dl`), on one shared label index,
- `rescale4dl_bmz.metrics.tables.evaluate_pair(..., "instance")`: matching, the compatibility crop
  IoU and the morphology of every GT and predicted object, i.e. the whole per-pair evaluation.

Each timing is the best of `--repeat` runs per pair (the machine may be shared). Targets: matching
within 2x of stardist's time, and the full evaluation under 1 s per 1000 GT objects.
`--check` exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "reference" / "saureus_instance"


def _best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", default="ds2", choices=("ds2", "ds4"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    import tifffile
    from stardist.matching import matching

    sys.path.insert(0, str(ROOT))
    from rescale4dl_bmz.metrics.tables import evaluate_pair
    from rescale4dl_bmz.metrics import crop_iou_rescale4dl, match_instances
    from rescale4dl_bmz.metrics.instance import index_labels

    def instance_metrics(gt, pred):
        g, p = index_labels(gt), index_labels(pred)
        return match_instances(g, p), crop_iou_rescale4dl(g, p)

    folder = DATA / args.factor
    pairs = [(p.stem, tifffile.imread(p), tifffile.imread(folder / "pred" / p.name))
             for p in sorted((folder / "gt").glob("*.tif"))]
    if not pairs:
        print(f"no reference pairs in {folder}", file=sys.stderr)
        return 2
    _, g0, p0 = pairs[0]
    matching(g0, p0), match_instances(g0, p0), evaluate_pair(g0, p0, "instance", "warm-up")  # JIT, imports

    rows, totals = [], {"stardist": 0.0, "match": 0.0, "instance": 0.0, "evaluate": 0.0}
    n_gt = n_pred = 0
    for name, gt, pred in pairs:
        t_sd = _best_time(lambda: matching(gt, pred, thresh=0.5), args.repeat)
        t_m = _best_time(lambda: match_instances(gt, pred), args.repeat)
        t_i = _best_time(lambda: instance_metrics(gt, pred), args.repeat)
        t_e = _best_time(lambda: evaluate_pair(gt, pred, "instance", name, args.factor), args.repeat)
        m = match_instances(gt, pred)
        n_gt, n_pred = n_gt + m.n_true, n_pred + m.n_pred
        totals["stardist"] += t_sd
        totals["match"] += t_m
        totals["instance"] += t_i
        totals["evaluate"] += t_e
        rows.append({"image": name, "n_true": m.n_true, "n_pred": m.n_pred, "stardist_s": t_sd, "match_s": t_m,
                     "instance_s": t_i, "evaluate_s": t_e})

    result = {
        "factor": args.factor, "pairs": len(pairs), "n_true": n_gt, "n_pred": n_pred,
        "stardist_s": totals["stardist"], "match_s": totals["match"], "instance_s": totals["instance"],
        "evaluate_s": totals["evaluate"],
        "match_over_stardist": totals["match"] / totals["stardist"],
        "instance_over_stardist": totals["instance"] / totals["stardist"],
        "evaluate_over_stardist": totals["evaluate"] / totals["stardist"],
        "evaluate_s_per_1000_gt_objects": 1000 * totals["evaluate"] / n_gt,
        "evaluate_s_per_1000_objects_measured": 1000 * totals["evaluate"] / (n_gt + n_pred),
        "per_pair": rows,
    }
    result["target_match_within_2x"] = result["match_over_stardist"] <= 2.0
    result["target_under_1s_per_1000"] = result["evaluate_s_per_1000_gt_objects"] < 1.0
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'image':>6} {'GT':>5} {'pred':>5} {'stardist s':>11} {'match s':>8} {'+crop s':>8} "
              f"{'evaluate s':>11}")
        for r in rows:
            print(f"{r['image']:>6} {r['n_true']:5d} {r['n_pred']:5d} {r['stardist_s']:11.4f} {r['match_s']:8.4f} "
                  f"{r['instance_s']:8.4f} {r['evaluate_s']:11.4f}")
        print(f"{args.factor}: {len(pairs)} pairs, {n_gt} GT / {n_pred} predicted objects")
        print(f"match_instances / stardist.matching  = {result['match_over_stardist']:.2f}  (target <= 2)")
        print(f"match + crop IoU / stardist.matching = {result['instance_over_stardist']:.2f}  "
              "(instance metrics of our tables, no morphology)")
        print(f"evaluate_pair / stardist.matching    = {result['evaluate_over_stardist']:.2f}  "
              "(matching + crop IoU + morphology of GT and predicted objects)")
        print(f"evaluate_pair: {result['evaluate_s_per_1000_gt_objects']:.3f} s per 1000 GT objects (target < 1), "
              f"{result['evaluate_s_per_1000_objects_measured']:.3f} s per 1000 objects measured")
    ok = result["target_match_within_2x"] and result["target_under_1s_per_1000"]
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
