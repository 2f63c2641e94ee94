"""The `rescale4dl` command: one sub-command per module in `rescale4dl_bmz.cli`.

Command modules keep heavy imports (TensorFlow, Prefect, ImageJ) inside `run`, so
`rescale4dl --help` stays fast. Every failure ends with one line on stderr (`--debug` adds the
traceback) and an exit code of its own:

    0    success
    1    internal error (a bug: please report it with the --debug output)
    2    bad input or options (the message names the file or option)
    3    the sweep finished, but a factor failed
    4    environment fault: a full or read-only disk, no permission, a file where a folder is needed
    130  interrupted by SIGINT (Ctrl-C);  143  stopped by SIGTERM
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback

from rescale4dl_bmz.errors import EXIT_ENVIRONMENT, EXIT_INPUT, EXIT_INTERNAL, InputError

# Order shown in --help: the user's journey from data to a shipped model.
COMMANDS = ("demo", "advise", "rescale", "labels", "train", "predict", "evaluate",
            "sweep", "select", "plan", "export")
# Commands that load TensorFlow: Keras set to its TensorFlow backend, then both imported up front with
# their start-up lines muted (unless --verbose).
# (`sweep` and `demo` train, predict and export in the TensorFlow worker; a pretrained package's
# sweep imports TensorFlow here, muted then by `cli.sweep.run_and_report`.)
TF_COMMANDS = ("train", "predict", "export")


def version() -> str:
    """The installed version (the package metadata), else the source's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("rescale4dl_bmz")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from rescale4dl_bmz import __version__

        return __version__


def _available_commands() -> list:
    mods = []
    for name in COMMANDS:
        try:
            mods.append(importlib.import_module(f"rescale4dl_bmz.cli.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"rescale4dl_bmz.cli.{name}":
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
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _available_commands():
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from rescale4dl_bmz.process.logs import quiet_frameworks, setup_logging
    from rescale4dl_bmz.process.settings import use_tensorflow_keras

    setup_logging(args.verbose)
    import rescale4dl_bmz.process.shutdown as shutdown
    from rescale4dl_bmz.process.shutdown import Interrupted

    shutdown.hard_exit = True  # a signal ends the command at once, after cleaning up (see shutdown)

    def fail(code: int, message: str) -> int:
        if args.debug:
            traceback.print_exc()
        print(f"rescale4dl {args.command}: error: {message}", file=sys.stderr)
        return code

    try:
        if args.command in TF_COMMANDS:
            use_tensorflow_keras()  # before anything imports Keras
            if not args.verbose:
                quiet_frameworks()
        return int(args._run(args) or 0)
    except InputError as exc:
        return fail(EXIT_INPUT, str(exc))
    except Interrupted as exc:
        return fail(exc.exit_code, f"{exc}; rerun the same command to resume")
    except KeyboardInterrupt:
        return fail(128 + signal.SIGINT, "interrupted; rerun the same command to resume")
    except OSError as exc:
        return fail(EXIT_ENVIRONMENT, describe_os_error(exc))
    except Exception as exc:  # a bug: one line, the traceback with --debug
        return fail(EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
                                   "traceback and report it)")


def describe_os_error(exc: OSError) -> str:
    """'PATH: cause' for a disk or permission fault (the path the system call failed on)."""
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    cause = exc.strerror or type(exc).__name__
    where = " -> ".join(str(p) for p in paths) if paths else "(no path)"
    return f"{where}: {cause}"


if __name__ == "__main__":
    sys.exit(main())
