"""`rescale4dl evaluate GT_DIR PRED_DIR --task semantic|instance --out OUT`: metric tables per factor."""

from __future__ import annotations

import argparse

from rescale4dl_bmz.vocabulary import CROPS, TASKS


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate", help="IoU, matching, diameters, coverage and throughput of predictions, per factor",
        description="Compare predicted masks with ground truth and write OUT/per_object.csv, OUT/per_image.csv "
                    "and OUT/summary.csv (one row per factor and grid). GT_DIR and PRED_DIR are flat folders "
                    "(one factor, named by --factor) or hold one sub-folder per factor (og, ds2, up2, ...; each "
                    "with the masks, or a gt/ or pred/ sub-folder). Masks pair by file name.")
    p.add_argument("gt_dir", metavar="GT_DIR", help="ground-truth masks (or one sub-folder per factor)")
    p.add_argument("pred_dir", metavar="PRED_DIR", help="predicted masks, same names (or one sub-folder per factor)")
    p.add_argument("--task", required=True, choices=TASKS,
                   help="semantic: 0/1/2 masks (background, inner, edge); instance: object labels")
    p.add_argument("--out", required=True, help="output folder for the CSV tables")
    p.add_argument("--factor", "--factors", dest="factor", nargs="+", metavar="F",
                   help="factor of flat folders (default og); with factor sub-folders, the ones to evaluate: "
                        "names or numbers, spaces or commas, e.g. 'og ds2' or 'og,ds2' or '1,2' (default all)")
    p.add_argument("--pixel-size", type=float, metavar="UM",
                   help="ORIGINAL pixel size in µm (default: from the files' metadata, else unknown)")
    p.add_argument("--tau", type=float, default=1.0, metavar="S",
                   help="time to acquire one field, for throughput = field area / object area / tau (default 1)")
    p.add_argument("--native-gt", metavar="DIR",
                   help="original ground truth: also evaluate on the original grid ('native')")
    p.add_argument("--crop", choices=CROPS, default="topleft",
                   help="where the ladder cropped the original field (with --native-gt; default topleft)")
    p.add_argument("--conditions", metavar="CSV",
                   help="image,condition table with two conditions: diameter difference per factor "
                        "(writes OUT/conditions.csv)")
    p.add_argument("--thresh", type=float, default=0.5, help="instance match threshold: IoU > thresh (default 0.5)")
    p.add_argument("--min-size", type=int, default=10,
                   help="semantic task: objects under this many px are dropped after the watershed (default 10)")
    p.add_argument("--diameter", choices=("width", "equivalent", "inscribed"), default="width",
                   help="how an object's diameter is measured for the %% of diameter per pixel (default width: the "
                        "thickness of a rod, the diameter of a round cell)")
    p.add_argument("--bytes-per-pixel", type=float, default=2.0,
                   help="storage per pixel of the raw images, for bytes per object (default 2: 16-bit)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return p


def run(args) -> int:
    import logging

    from rescale4dl_bmz.files.folders import ensure_outside
    from rescale4dl_bmz.errors import InputError
    from rescale4dl_bmz.metrics.summaries import condition_effects, summarize
    from rescale4dl_bmz.metrics.evaluation_folders import evaluate_folders, read_conditions, write_table
    from rescale4dl_bmz.factors import parse_factors

    import math

    log = logging.getLogger(__name__)
    if args.pixel_size is not None and not (math.isfinite(args.pixel_size) and args.pixel_size > 0):
        raise InputError(f"--pixel-size must be a positive finite number of µm, got {args.pixel_size}")
    if not (math.isfinite(args.tau) and args.tau > 0):
        raise InputError(f"--tau must be a positive finite number of seconds, got {args.tau}")
    if not 0 <= args.thresh < 1:
        raise InputError(f"--thresh must lie in [0, 1), got {args.thresh}")
    if args.min_size < 0:
        raise InputError(f"--min-size must be >= 0, got {args.min_size}")
    if not (math.isfinite(args.bytes_per_pixel) and args.bytes_per_pixel > 0):
        raise InputError(f"--bytes-per-pixel must be positive, got {args.bytes_per_pixel}")
    inputs = [args.gt_dir, args.pred_dir] + ([args.native_gt] if args.native_gt else [])
    ensure_outside(args.out, *inputs)
    conditions = read_conditions(args.conditions) if args.conditions else None
    factors = parse_factors(args.factor) if args.factor else None

    per_object, per_image = evaluate_folders(
        args.gt_dir, args.pred_dir, args.task, factors=factors, native_gt=args.native_gt, crop=args.crop,
        pixel_size_um=args.pixel_size, thresh=args.thresh, min_size=args.min_size, diameter=args.diameter,
        bytes_per_pixel=args.bytes_per_pixel)
    summary = summarize(per_image, per_object, tau=args.tau, seed=args.seed)
    cond = condition_effects(per_object, conditions) if conditions else None

    from pathlib import Path

    out = Path(args.out)
    write_table(out / "per_object.csv", per_object)
    write_table(out / "per_image.csv", per_image)
    if cond is not None:
        write_table(out / "conditions.csv", cond)
    write_table(out / "summary.csv", summary)
    for r in summary.itertuples():
        log.info("%s %-5s %-7s IoU %.4f [%.4f, %.4f]  D_s %.1f px  %s", r.task, r.factor, r.grid, r.iou_mean,
                 r.iou_ci_low, r.iou_ci_high, r.gt_mean_diameter_px, "best" if r.test_vs_best == "best"
                 else f"p vs best {r.p_vs_best:.3g}")
    print(f"wrote {out / 'summary.csv'} ({len(summary)} rows), per_image.csv ({len(per_image)}), "
          f"per_object.csv ({len(per_object)})" + (", conditions.csv" if cond is not None else ""))
    return 0
