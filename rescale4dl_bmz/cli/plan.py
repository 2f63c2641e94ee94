"""`rescale4dl plan --camera WxH --tau SECONDS RUN_DIR`: the acquisition planner."""

from __future__ import annotations

import argparse

from rescale4dl_bmz.vocabulary import CRITERIA, DEFAULT_CRITERION


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plan", help="objects and data per field and per hour at each factor's pixel size",
        description="Acquisition planner: per factor, objects per field of view, objects per hour, "
                    "bytes per hour and per object (16-bit camera), with the chosen factor marked.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the sweep's output folder")
    p.add_argument("--camera", required=True, metavar="WxH", help="camera size in pixels, e.g. 2048x2048")
    p.add_argument("--tau", required=True, type=float, metavar="SECONDS", help="time to acquire one field")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="original pixel size in µm (overrides the run's)")
    p.add_argument("--factor", default=None, metavar="NAME", help="highlight this factor instead of the selected one")
    p.add_argument("--criterion", choices=CRITERIA, default=DEFAULT_CRITERION,
                   help="selection criterion for the highlighted factor")
    p.add_argument("--tolerance", type=float, default=None, metavar="X", help="see `rescale4dl select`")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the plan (.csv or .md)")
    return p


def run(args) -> int:
    from rescale4dl_bmz.files.text_files import write_text
    from rescale4dl_bmz.errors import InputError
    from rescale4dl_bmz.factors import parse_factor
    from rescale4dl_bmz.decide.acquisition import plan_acquisition, plan_areas, plan_density, plan_parse_camera
    from rescale4dl_bmz.decide.acquisition_text import plan_format
    from rescale4dl_bmz.decide.select import select_factor, select_object_areas
    from rescale4dl_bmz.files.run_folder import load_run

    camera = plan_parse_camera(args.camera)
    import math

    from rescale4dl_bmz.files.folders import check_output_file

    if not (math.isfinite(args.tau) and args.tau > 0):
        raise InputError(f"--tau must be a positive finite number of seconds, got {args.tau}")
    if args.out and not str(args.out).lower().endswith((".csv", ".md")):
        raise InputError(f"--out {args.out}: the plan is written as .csv or .md")
    if args.out:
        check_output_file(args.out, "--out")
    run_ = load_run(args.run_dir, args.pixel_size)
    selection = select_factor(run_.summary, run_.per_image, args.criterion, args.tolerance,
                              pixel_size_um=run_.pixel_size_um)
    chosen = parse_factor(args.factor).name if args.factor else selection.factor
    factors = list(selection.table["factor"])
    if chosen not in factors:
        raise InputError(f"--factor {args.factor}: not a finished factor of this run ({', '.join(factors)})")
    areas = plan_areas(factors, select_object_areas(run_.summary))
    plan = plan_acquisition(factors, {f: a for f, (a, _) in areas.items()}, camera, args.tau,
                            run_.pixel_size_um, chosen, density=plan_density(run_.summary, run_.per_image))
    print(f"Camera {camera[0]}x{camera[1]} px, one field every {args.tau:g} s; -> marks {chosen}"
          f" ({'chosen by ' + selection.criterion if not args.factor else 'given'}).")
    print(plan_format(plan), end="")
    if args.out:
        text = plan.to_csv(index=False) if str(args.out).lower().endswith(".csv") else plan_format(plan, markdown=True)
        write_text(args.out, text)
    return 0
