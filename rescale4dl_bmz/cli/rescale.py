"""`rescale4dl rescale IMAGES MASKS --out OUT`: write the dataset over a ladder of pixel sizes."""

from __future__ import annotations

import argparse

from rescale4dl_bmz.vocabulary import CROPS, MODES


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "rescale",
        help="rescale images and instance masks over a ladder of factors",
        description=(
            "Crop every image/mask pair once to a multiple of the coarsest factor, then write "
            "OUT/<factor>/images and OUT/<factor>/masks (with each factor's pixel size in the TIFF "
            "metadata) and OUT/manifest.json/.csv. All input is checked before anything is written; "
            "a rerun into the same OUT skips finished files."),
    )
    p.add_argument("images", metavar="IMAGES", help="folder of images (.tif/.tiff/.png)")
    p.add_argument("masks", metavar="MASKS", help="folder of instance masks with the same file names")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (outside the input folders)")
    p.add_argument("--factors", nargs="+", metavar="F", default=None,
                   help="names or numbers, spaces or commas: 'og ds2 ds4', 'og,ds2,ds4' or '0.5,1,2' "
                        "(default: up4 up2 og ds2 ds4 ds8 ds16)")
    p.add_argument("--mode", choices=MODES, default="aligned",
                   help="aligned (default): image and mask on one grid; rescale4dl: the original recipe")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="original pixel size in micrometres (default: from the files, else unknown)")
    p.add_argument("--channel", type=int, default=None, metavar="N",
                   help="channel to use in multichannel/RGB images (0-based)")
    p.add_argument("--crop", choices=CROPS, default="topleft",
                   help="where the crop to a multiple of the coarsest factor keeps the image (default topleft)")
    return p


def run(args: argparse.Namespace) -> int:
    from rescale4dl_bmz.factors import parse_factors
    from rescale4dl_bmz.data.ladder import build_ladder, summarize

    factors = parse_factors(args.factors) if args.factors else None
    manifest = build_ladder(args.images, args.masks, args.out, factors=factors, mode=args.mode,
                            pixel_size_um=args.pixel_size, channel=args.channel, crop_anchor=args.crop)
    print(f"rescaled {len(manifest['items'])} pair(s) ({args.mode} mode) into {args.out}")
    print(f"manifest: {args.out}/manifest.json, {args.out}/manifest.csv")
    print(f"{'factor':<7}{'pixel size (um)':>16}{'image size':>14}{'objects':>9}{'vanished':>10}{'split':>7}")
    for t in summarize(manifest["rows"]):
        px = "unknown" if t["pixel_size_um"] is None else f"{t['pixel_size_um']:.4g}"
        shapes = sorted(t["shapes"])
        size = f"{shapes[0][0]}x{shapes[0][1]}" if len(shapes) == 1 else f"{len(shapes)} sizes"
        print(f"{t['factor']:<7}{px:>16}{size:>14}{t['objects']:>9}{t['vanished']:>10}{t['split']:>7}")
    return 0
