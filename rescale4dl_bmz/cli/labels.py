"""`rescale4dl labels MASKS --out OUT`: edge/inner (0/1/2) labels from instance masks."""

from __future__ import annotations

import argparse
import sys

from rescale4dl_bmz.vocabulary import LABEL_STYLES


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "labels", help="semantic edge/inner labels (0/1/2) from instance masks, in Python or ImageJ",
        description="Write OUT/<name>.tif (uint8: 0 background, 1 inner, 2 edge) for every instance mask in "
                    "MASKS, keeping each mask's pixel size. Style 'deepbacs' is the DeepBacs / MorphoLibJ "
                    "'Label Boundaries' rule (a pixel is an edge when its right or lower neighbour has another "
                    "label); 'inner' is a symmetric 1-px rim inside each object. Engine 'imagej' runs our macro "
                    "fiji_macros/instance_to_semantic.ijm in ImageJ (a Fiji given by --fiji or RESCALE4DL_FIJI, "
                    "else Debian's ij.jar under a private Xvfb) and gives the same result, pixel for pixel.")
    p.add_argument("masks", help="folder of instance masks (.tif/.tiff/.png)")
    p.add_argument("--out", required=True, help="output folder (not inside MASKS)")
    p.add_argument("--style", choices=LABEL_STYLES, default="deepbacs",
                   help="edge rule (default: deepbacs)")
    p.add_argument("--engine", choices=("python", "imagej"), default="python",
                   help="who computes the labels (default: python; imagej needs Java)")
    p.add_argument("--fiji", help="Fiji installation folder for --engine imagej (default: env RESCALE4DL_FIJI, "
                                  "else plain ImageJ 1.x from RESCALE4DL_IJ_JAR or /usr/share/java/ij.jar)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per image in ImageJ (default 120)")
    return p


def run(args) -> int:
    from pathlib import Path

    from rescale4dl_bmz.errors import InputError
    from rescale4dl_bmz.files.folders import ensure_outside, images_by_stem
    from rescale4dl_bmz.files.images import read_instance_mask, read_mask, read_pixel_size, write_tiff

    if args.fiji and args.engine != "imagej":
        raise InputError("--fiji applies to --engine imagej only")
    if not args.timeout > 0:
        raise InputError(f"--timeout must be positive, got {args.timeout}")
    ensure_outside(args.out, args.masks)
    files = list(images_by_stem(args.masks, "mask folder").values())  # outputs are named by stem
    for f in files:  # validate everything before writing anything
        read_instance_mask(f)
        read_pixel_size(f)
    if args.engine == "imagej":
        from rescale4dl_bmz.imagej.batch import labels_folder_imagej
        from rescale4dl_bmz.imagej.bridge import ImageJError
        from rescale4dl_bmz.imagej.install import ImageJUnavailable

        try:
            written = labels_folder_imagej(args.masks, args.out, args.style, fiji=args.fiji, timeout=args.timeout)
        except (ImageJError, ImageJUnavailable) as exc:
            print(f"rescale4dl labels: error: {exc}", file=sys.stderr)
            return 1
    else:
        from rescale4dl_bmz.data.labels import instance_to_semantic

        written = [write_tiff(Path(args.out) / f"{f.stem}.tif", instance_to_semantic(read_mask(f), args.style),
                              read_pixel_size(f)) for f in files]
    print(f"wrote {len(written)} label images ({args.style}, {args.engine}) to {args.out}")
    return 0
