"""`rescale4dl export RUN_DIR --out PACKAGE.zip`: a bioimage.io package of the chosen factor's model."""

from __future__ import annotations

import argparse

from rescale4dl_bmz.vocabulary import CRITERIA, DEFAULT_CRITERION


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="bioimage.io (deepImageJ) package of the chosen factor's model",
        description="Write a bioimage.io spec 0.5 model package (Keras and TensorFlow SavedModel weights, "
                    "test tensors, documentation with the sweep table, the pixel size on the axes) and test it "
                    "with bioimageio.core, offline.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the sweep's output folder")
    p.add_argument("--out", required=True, metavar="PACKAGE.zip", help="the package to write")
    p.add_argument("--factor", default=None, metavar="NAME", help="factor to export (default: the selected one)")
    p.add_argument("--variant", choices=("bioimageio", "deepimagej"), default="bioimageio",
                   help="bioimageio: the package for the Zoo and deepImageJ, axes carry the pixel size in µm "
                        "(default); deepimagej: a fallback marked as a variant of it, with unit axis scales, for "
                        "deepImageJ/JDLL versions that size output tiles by the output axis scale")
    p.add_argument("--criterion", choices=CRITERIA, default=DEFAULT_CRITERION, help="see `rescale4dl select`")
    p.add_argument("--tolerance", type=float, default=None, metavar="X", help="see `rescale4dl select`")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="original pixel size in µm (overrides the run's)")
    p.add_argument("--test-image", default=None, metavar="TIFF",
                   help="image at the factor's pixel size for the test tensors (default: RUN_DIR/<factor>/images)")
    p.add_argument("--author", action="append", default=None, metavar="NAME[:GITHUB[:ORCID]]",
                   help="author (repeatable), e.g. 'Ada Lovelace:adalovelace:0000-0002-1825-0097'")
    p.add_argument("--maintainer", action="append", default=None, metavar="NAME:GITHUB[:ORCID]",
                   help="maintainer with a GitHub handle (repeatable; default: the authors who have one)")
    p.add_argument("--version", dest="model_version", default=None, metavar="X.Y.Z",
                   help="the model's version (default 0.1.0)")
    p.add_argument("--git-repo", default=None, metavar="URL", help="https URL of the code/training repository")
    p.add_argument("--license", default=None, help="SPDX license identifier of the model (default MIT)")
    p.add_argument("--data-name", default=None, help="public name of the training data (default: its folder name)")
    p.add_argument("--data-license", default=None, metavar="SPDX", help="licence of the training data")
    p.add_argument("--data-citation", default=None, metavar="TEXT", help="reference of the training data")
    p.add_argument("--data-doi", default=None, metavar="DOI", help="DOI of the training data")
    p.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test (not recommended)")
    return p


def run(args) -> int:
    from rescale4dl_bmz.bioimageio.export import PackageTestError, export_package

    metadata = {"authors": args.author, "maintainers": args.maintainer, "version": args.model_version,
                "git_repo": args.git_repo, "license": args.license, "data_name": args.data_name,
                "data_license": args.data_license, "data_citation": args.data_citation, "data_doi": args.data_doi}
    try:
        out = export_package(args.run_dir, args.factor, args.out, variant=args.variant, run_test=not args.no_test,
                             criterion=args.criterion, tolerance=args.tolerance, pixel_size_um=args.pixel_size,
                             test_image=args.test_image,
                             metadata={k: v for k, v in metadata.items() if v is not None})
    except PackageTestError as exc:
        print(f"rescale4dl export: {exc}")
        return 1
    print(f"wrote {out}" + ("" if args.no_test else " (bioimageio.core test passed)"))
    return 0
