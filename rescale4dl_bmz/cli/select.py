"""`rescale4dl select RUN_DIR`: choose the factor (and pixel size) after a sweep."""

from __future__ import annotations

import argparse

from rescale4dl_bmz.vocabulary import CRITERIA, DEFAULT_CRITERION


def add_parser(subparsers) -> argparse.ArgumentParser:
    from rescale4dl_bmz.decide.select import DEFAULT_ALPHA

    p = subparsers.add_parser(
        "select", help="choose the factor and pixel size after a sweep",
        description="Choose the factor after a sweep and print the recommended pixel size, the "
                    "statistics behind the choice and the gains against the original sampling (og).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the sweep's output folder")
    p.add_argument("--criterion", choices=CRITERIA, default=DEFAULT_CRITERION,
                   help="coarsest-equivalent (default): the coarsest factor practically equivalent to the "
                        "best (the 95%% CI of its paired IoU difference over the test images stays above "
                        "-margin); max-iou; iou-x-throughput; diameter-fidelity")
    p.add_argument("--tolerance", type=float, default=None, metavar="X",
                   help="with coarsest-equivalent: the margin of practical equivalence, an IoU difference "
                        "(default 0.02)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="significance level (default 0.05)")
    p.add_argument("--grid", choices=("native", "sampled"), default=None,
                   help="evaluation grid to rank on (default: native when the sweep has it)")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="original pixel size in µm (overrides the run's)")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE",
                   help="also write the selection as JSON to FILE")
    return p


def run(args) -> int:
    from rescale4dl_bmz.files.folders import check_output_file
    from rescale4dl_bmz.files.text_files import write_json
    from rescale4dl_bmz.decide.select import select_factor
    from rescale4dl_bmz.decide.select_text import select_format
    from rescale4dl_bmz.files.run_folder import load_run

    if args.json_out:
        check_output_file(args.json_out, "--json")
    run_ = load_run(args.run_dir, args.pixel_size)
    selection = select_factor(run_.summary, run_.per_image, args.criterion, args.tolerance,
                              grid=args.grid, pixel_size_um=run_.pixel_size_um, alpha=args.alpha)
    print(select_format(selection), end="")
    if args.json_out:
        write_json(args.json_out, selection.to_dict())
    return 0
