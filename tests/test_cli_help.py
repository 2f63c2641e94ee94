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


def test_sweep_options_cover_the_config_fields():
    # every SweepConfig field is an option, or listed as set in a config file only: none is forgotten
    from rescale4dl_bmz.cli.sweep import DATA_FLAGS, FILE_ONLY_FIELDS, RUN_FLAGS
    from rescale4dl_bmz.sweep.config import SweepConfig

    offered = {f.field.split(".")[0] for f in DATA_FLAGS + RUN_FLAGS}
    assert offered | set(FILE_ONLY_FIELDS) == set(SweepConfig.model_fields)
    assert offered & set(FILE_ONLY_FIELDS) <= {"training"}


def test_sweep_options_become_the_config(tmp_path):
    # the generated options: renamed flags, choices, lists, switches and nested training options
    from rescale4dl_bmz.cli.sweep import build_config

    args = build_parser().parse_args([
        "sweep", "--images", str(tmp_path), "--masks", str(tmp_path), "--out", str(tmp_path / "o"),
        "--task", "instance", "--pixel-size", "0.1", "--test-images", "a", "b", "--factors", "og,ds2",
        "--mode", "rescale4dl", "--epochs", "3", "--base-filters", "8", "--min-foreground", "0.2",
        "--tau", "2", "--criterion", "max-iou", "--prune", "--no-export", "--dask-address", "tcp://h:1"])
    config = build_config(args)
    assert (config.task, config.pixel_size_um, config.test_images, config.factors, config.mode) == (
        "instance", 0.1, ["a", "b"], ["og", "ds2"], "rescale4dl")
    assert (config.tau_s, config.criterion, config.prune, config.export) == (2.0, "max-iou", True, False)
    assert config.task_runner == "dask"  # implied by --dask-address
    assert config.training.given() == {"architecture": {"kind": "stardist", "base_filters": 8}, "epochs": 3,
                                       "min_foreground_fraction": 0.2}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--mode", "nearest"])  # choices come from the model's Literal
