"""The `rescale4dl` command: one sub-command per module in `rescale4dl_bmz.commands`.

Command modules keep heavy imports (TensorFlow, Prefect, ImageJ) inside `run`, so
`rescale4dl --help` stays fast. An `InputError` becomes a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import InputError

# Order shown in --help: the user's journey from data to a shipped model.
COMMANDS = ("demo", "advise", "rescale", "labels", "train", "predict", "evaluate",
            "sweep", "select", "plan", "export")


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
        description="Find the pixel size at which deep-learning segmentation of your data works best.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _available_commands():
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpcore", "distributed", "numba", "h5py", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"rescale4dl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
