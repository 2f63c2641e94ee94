"""The `rescale4dl` command: one sub-command per module in `rescale4dl_bmz.commands`.

Command modules keep heavy imports (TensorFlow, Prefect, ImageJ) inside `run`, so
`rescale4dl --help` stays fast. An `InputError` becomes a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import InputError

# Order shown in --help: the user's journey from data to a shipped model.
COMMANDS = ("demo", "advise", "rescale", "labels", "train", "predict", "evaluate",
            "sweep", "select", "plan", "export")
# Commands that load TensorFlow: imported up front with its start-up lines muted (unless --verbose).
TF_COMMANDS = ("demo", "train", "predict", "sweep", "export")


def version() -> str:
    """The installed version (the package metadata), else the source's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("rescale4dl_bmz")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from . import __version__

        return __version__


def _available_commands() -> list:
    mods = []
    for name in COMMANDS:
        try:
            mods.append(importlib.import_module(f"rescale4dl_bmz.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"rescale4dl_bmz.commands.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rescale4dl",
        description="Find the pixel size at which deep-learning segmentation of your data works best: "
                    "rescale annotated images over a ladder of pixel sizes, train and score one network per "
                    "pixel size, recommend the pixel size to acquire at, and export that model for Fiji.",
        epilog="Start with 'rescale4dl demo', then 'rescale4dl advise MASKS' and 'rescale4dl sweep'. "
               "Every command has --help.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"rescale4dl {version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show everything: debug lines, Prefect task states, TensorFlow messages, tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _available_commands():
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .terminal import quiet_frameworks, setup_logging

    setup_logging(args.verbose)
    try:
        if args.command in TF_COMMANDS and not args.verbose:
            quiet_frameworks()
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"rescale4dl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
