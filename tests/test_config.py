"""SweepConfig: YAML in, validated model out; unknown keys and impossible combinations are errors."""

import pytest
import yaml

from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.sweep.config import load_sweep_config, make_sweep_config
from rescale4dl_bmz.errors import InputError


def _write(tmp_path, data):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_round_trip_resolves_relative_paths(tmp_path):
    path = _write(tmp_path, {"images": "imgs", "masks": "msks", "out": "run", "task": "semantic",
                             "factors": ["ds2", "og", 4], "training": {"steps": 5}})
    config = load_sweep_config(path)
    assert config.images == (tmp_path / "imgs").resolve()
    assert config.factors == ["og", "ds2", "ds4"]
    again = yaml.safe_load(config.to_yaml())
    assert again["factors"] == ["og", "ds2", "ds4"] and again["training"] == {"steps": 5}


@pytest.mark.parametrize("bad, words", [
    ({"colour": "red"}, "colour"),                                   # unknown key
    ({"factors": ["ds3"]}, "power of two"),                          # bad factor
    ({"training": {"epochs": 2, "steps": 3}}, "not both"),          # training cross-field check
    ({"training": {"unknown_option": 1}}, "unknown_option"),        # unknown training key
    ({"training": {"task": "instance"}}, "set by the sweep"),       # owned by the sweep
    ({"training": {"patch_size": 100, "architecture": {"kind": "unet", "depth": 3}}}, "divisible"),
    ({"pixel_size_um": -1}, "pixel_size_um"),
    ({"dask_address": "tcp://127.0.0.1:8786"}, "task_runner"),
])
def test_invalid_configs_are_refused(tmp_path, bad, words):
    data = {"images": "i", "masks": "m", "out": "o", "task": "semantic", **bad}
    with pytest.raises(InputError, match=words):
        load_sweep_config(_write(tmp_path, data))


def test_sweep_cli_refuses_bad_config_before_any_work(tmp_path, capsys):
    path = _write(tmp_path, {"images": "i", "masks": "m", "out": "o", "task": "semantic", "typo_key": 1})
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert "typo_key" in err and str(path) in err
    assert not (tmp_path / "o").exists()


def test_sweep_cli_refuses_factor_list_images_cannot_support(tmp_path, shared_data, capsys):
    # 512x512 S. aureus crop split in two would still need 2 images; one image is refused, and
    # a factor too coarse for the network's divisor is refused before training.
    out = tmp_path / "run"
    code = main(["sweep", "--images", str(shared_data / "saureus_crop/images"),
                 "--masks", str(shared_data / "saureus_crop/masks"), "--task", "semantic", "--out", str(out)])
    assert code == 2
    assert "at least 2 images" in capsys.readouterr().err
    assert not any(out.glob("*/model"))


def test_factor_too_coarse_for_the_network_is_refused(tmp_path, shared_data):
    from rescale4dl_bmz.sweep.prepare import prepare

    config = make_sweep_config(images=shared_data / "celegans_bbbc010/images",
                               masks=shared_data / "celegans_bbbc010/masks", out=tmp_path / "run",
                               task="semantic", factors=["og", "ds16"], test_images=["A01"],
                               training={"patch_size": 64})
    with pytest.raises(InputError, match="ds16"):
        prepare(config)
    assert not (tmp_path / "run" / "og").exists()


def test_prune_skips_factors_advise_calls_hopeless(tmp_path):
    from rescale4dl_bmz.files.demo_data import write_demo_dataset
    from rescale4dl_bmz.sweep.finish import Outcome, outcome_rows
    from rescale4dl_bmz.sweep.prepare import prepare

    images, masks = write_demo_dataset(tmp_path / "data")
    config = make_sweep_config(images=images, masks=masks, out=tmp_path / "run", task="semantic",
                               factors=["og", "ds2", "ds8", "ds16"], test_images=["q4"], prune=True)
    plan = prepare(config)
    # nuclei ~20 px wide: 2.5 px at ds8 and 1.25 px at ds16 are hopeless; og and ds2 are kept
    assert set(plan.pruned) == {"ds8", "ds16"} and plan.run_factors == ["og", "ds2"]
    assert "width" in plan.pruned["ds8"]
    rows = {r["factor"]: r for r in outcome_rows(plan, [Outcome("og", "done"), Outcome("ds2", "done")])}
    assert rows["ds16"]["status"] == "pruned" and "hopeless" in rows["ds16"]["error"]
    unpruned = prepare(config.model_copy(update={"prune": False}))
    assert unpruned.run_factors == ["og", "ds2", "ds8", "ds16"] and not unpruned.pruned


def test_errors_name_the_nested_field(tmp_path):
    data = {"images": "i", "masks": "m", "out": "o", "task": "semantic",
            "training": {"architecture": {"kind": "unet", "depth": 9}}}
    with pytest.raises(InputError, match=r"training\.architecture\.unet\.depth: .*less than or equal to 5"):
        load_sweep_config(_write(tmp_path, data))
