"""`rescale4dl advise MASKS`: before any training, which factors suit the objects and the network."""

from __future__ import annotations

import argparse
import json
import math

from rescale4dl_bmz.vocabulary import NETWORKS


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("advise", help="object size vs receptive field per factor, before any training",
                       description="Measure object sizes in the instance masks (the width for elongated "
                                   "objects, the circle-equivalent diameter for round ones) and compare them, "
                                   "factor by factor, with the network's receptive field (RF). Objects wider than "
                                   "RF/2 lack context; objects narrower than 6 px lose their shape. At least one "
                                   "factor is always recommended.")
    p.add_argument("masks", help="folder of instance masks")
    p.add_argument("--pixel-size", type=float, help="original pixel size in µm (default: from the masks' metadata)")
    p.add_argument("--model", choices=NETWORKS, default="unet", help="network (default: unet)")
    p.add_argument("--depth", type=int, help="U-Net pooling steps (default 2, as the paper)")
    p.add_argument("--factors", nargs="+", metavar="F",
                   help="names or numbers, spaces or commas: 'og ds2 ds4', 'og,ds2,ds4' or '1,2,4' "
                        "(default: up4 up2 og ds2 ds4 ds8 ds16)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def run(args) -> int:
    from rescale4dl_bmz.decide.advise import advise, receptive_field, recommended_range
    from rescale4dl_bmz.decide.advise_text import no_window_advice
    from rescale4dl_bmz.files.folders import list_images
    from rescale4dl_bmz.files.images import read_instance_mask, read_pixel_size
    from rescale4dl_bmz.errors import InputError
    from rescale4dl_bmz.factors import parse_factors
    from rescale4dl_bmz.metrics.morphology import object_morphology

    if args.pixel_size is not None and not (math.isfinite(args.pixel_size) and args.pixel_size > 0):
        raise InputError(f"--pixel-size must be a positive finite number of µm, got {args.pixel_size}")
    if args.depth is not None and args.model != "unet":
        raise InputError("--depth applies to --model unet only")
    if args.depth is not None and not 1 <= args.depth <= 5:
        raise InputError(f"--depth must be between 1 and 5, got {args.depth}")
    factors = parse_factors(args.factors)
    files = list_images(args.masks, "mask folder")
    for path in files:  # refuse a non-label image before measuring anything
        read_instance_mask(path)
    diam, width = [], []
    for path in files:
        m = object_morphology(read_instance_mask(path))
        diam.extend(m["equivalent_diameter"])
        width.extend(m["width"])
    if not diam:
        raise InputError(f"{args.masks}: every mask is empty; nothing to measure")
    pixel = args.pixel_size if args.pixel_size is not None else read_pixel_size(files[0])
    rf = receptive_field(args.model, depth=args.depth)
    rows = advise(diam, width, factors, rf, pixel)
    good = recommended_range(rows)
    if args.json:
        print(json.dumps({"n_masks": len(files), "n_objects": len(diam), "pixel_size_um": pixel,
                          "model": rf.model, "rf_px": rf.effective_px, "rf_theoretical_px": rf.theoretical_px,
                          "size_measure": rows[0].size_measure, "recommended": good,
                          "factors": [r.as_dict() for r in rows]}, indent=2))
        return 0
    print(f"{len(diam)} objects in {len(files)} masks; pixel size "
          f"{f'{pixel:.4g} µm' if pixel else 'unknown'}; {rf.model} receptive field {rf.effective_px:.0f} px"
          + (f" (theoretical {rf.theoretical_px:.0f} px)" if rf.theoretical_px != rf.effective_px else ""))
    name = rows[0].size_measure.replace("_", " ")
    print(f"object size = {name} ({'elongated' if rows[0].size_measure == 'width' else 'round'} objects); "
          f"window {rows[0].window_low_px:.0f}-{rows[0].window_high_px:.1f} px (6 px to RF/2)")
    print(f"{'factor':>6} {'pixel µm':>9} {'size px':>8} {'eq.d px':>8} {'width px':>8} {'RF/size':>7} "
          f"{'%size/px':>8} {'inside':>6}  verdict")
    for r in rows:
        px = f"{r.pixel_size_um:.4g}" if r.pixel_size_um else "-"
        print(f"{r.factor:>6} {px:>9} {r.size_px:8.1f} {r.equivalent_diameter_px:8.1f} {r.width_px:8.1f} "
              f"{r.rf_over_size:7.2f} {r.pct_diameter_per_pixel:8.1f} {r.confidence:6.0%}  "
              f"{r.verdict}{' (hopeless)' if r.hopeless else ''}")
    best = max((r for r in rows if r.factor in good), key=lambda r: r.confidence)
    print("worth training: " + " ".join(good)
          + f" (confidence: {best.confidence:.0%} of the objects inside the window at {best.factor})")
    if not any(r.verdict == "recommended" for r in rows):
        print("no factor fits: " + no_window_advice(rows, rf))
    return 0
