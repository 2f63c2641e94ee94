"""`rescale4dl export RUN_DIR --out PACKAGE.zip`: a bioimage.io package of the chosen factor's model."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..recommend import CRITERIA, DEFAULT_CRITERION

    p = subparsers.add_parser(
        "export", help="bioimage.io (deepImageJ) package of the chosen factor's model",
        description="Write a bioimage.io spec 0.5 model package (Keras and TensorFlow SavedModel weights, "
                    "test tensors, documentation with the sweep table, the pixel size on the axes) and test it "
                    "with bioimageio.core, offline.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the sweep's output folder")
    p.add_argument("--out", required=True, metavar="PACKAGE.zip", help="the package to write")
    p.add_argument("--factor", default=None, metavar="NAME", help="factor to export (default: the selected one)")
    p.add_argument("--variant", choices=("bioimageio", "deepimagej"), default="bioimageio",
                   help="bioimageio: axes carry the pixel size in µm (default); deepimagej: unit axis scales, "
                        "pixel size in config.deepimagej.test_information (deepImageJ sizes tiles by the scales)")
    p.add_argument("--criterion", choices=CRITERIA, default=DEFAULT_CRITERION, help="see `rescale4dl select`")
    p.add_argument("--tolerance", type=float, default=None, metavar="X", help="see `rescale4dl select`")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="original pixel size in µm (overrides the run's)")
    p.add_argument("--test-image", default=None, metavar="TIFF",
                   help="image at the factor's pixel size for the test tensors (default: RUN_DIR/<factor>/images)")
    p.add_argument("--author", action="append", default=None, metavar="NAME",
                   help="author name (repeatable; no GitHub handles)")
    p.add_argument("--license", default="MIT", help="SPDX license identifier (default MIT)")
    p.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test (not recommended)")
    return p


def run(args) -> int:
    from ..export import PackageTestError, export_package

    try:
        out = export_package(args.run_dir, args.factor, args.out, variant=args.variant, run_test=not args.no_test,
                             criterion=args.criterion, tolerance=args.tolerance, pixel_size_um=args.pixel_size,
                             test_image=args.test_image, authors=args.author, license_id=args.license)
    except PackageTestError as exc:
        print(f"rescale4dl export: {exc}")
        return 1
    print(f"wrote {out}" + ("" if args.no_test else " (bioimageio.core test passed)"))
    return 0
