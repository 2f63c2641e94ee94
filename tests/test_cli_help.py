"""The command line as a microscopist reads it: --version, help on every option, real defaults,
and factor lists in every form the README shows, in every command that takes them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rescale4dl_bmz.cli.main import build_parser, main
from rescale4dl_bmz.cli.demo import DEMO_FACTORS

SAUREUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "saureus_crop"


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("rescale4dl 0.")


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in _subparsers().items() for a in p._actions
               if not a.help and not isinstance(a, argparse._HelpAction)]
    assert not missing


def test_help_states_the_real_defaults():
    demo = _subparsers()["demo"].format_help()
    assert " ".join(DEMO_FACTORS) in " ".join(demo.split())
    sweep = _subparsers()["sweep"].format_help()
    assert "SweepConfig" not in sweep and "rescale4dl_bmz." not in sweep


@pytest.mark.skipif(not SAUREUS.is_dir(), reason="../shared/data is absent")
@pytest.mark.parametrize("given", [["og,ds2,ds4"], ["og", "ds2", "ds4"], ["1,2,4"], ["og,", "ds2", "4"]])
def test_advise_takes_factor_lists_in_every_form(given, capsys):
    assert main(["advise", str(SAUREUS / "masks"), "--factors", *given]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("factor"))
    rows = [ln.split()[0] for ln in lines[header + 1:] if ln.startswith(" ")]
    assert rows == ["og", "ds2", "ds4"]


def test_sweep_config_takes_a_comma_list(tmp_path):
    from rescale4dl_bmz.sweep.config import make_sweep_config

    config = make_sweep_config(images=tmp_path, masks=tmp_path, out=tmp_path / "o", task="semantic",
                               factors=["og,ds2,ds4"])
    assert config.factors == ["og", "ds2", "ds4"]
