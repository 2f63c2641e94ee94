"""Factors: names and numbers, ladders, pixel sizes and crops to the coarsest step."""

import re
from pathlib import Path

import pytest

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import Factor, coarsest_step, crop_slices, default_ladder, parse_factor, parse_factors

ROOT = Path(__file__).resolve().parents[1]


def test_default_ladder_is_the_one_the_readme_shows():
    """Consecutive powers of two around og, each name parsing back to its factor, as documented."""
    ladder = default_ladder()
    assert [parse_factor(f.name) for f in ladder] == ladder
    assert Factor(1.0) in ladder and all(b.scale == 2 * a.scale for a, b in zip(ladder, ladder[1:]))
    documented = re.search(r"the aligned ladder `([^`]+)`", (ROOT / "README.md").read_text()).group(1)
    assert [f.name for f in ladder] == documented.split()


@pytest.mark.parametrize("text,scale", [("ds2", 2), ("up4", 0.25), ("og", 1), ("0.5", 0.5), ("16", 16), (8, 8)])
def test_parse_names_and_numbers(text, scale):
    assert parse_factor(text).scale == scale


@pytest.mark.parametrize("bad", ["3", "ds3", "0.3", "-2", "0", "foo", "up6"])
def test_non_power_of_two_is_refused(bad):
    with pytest.raises(InputError):
        parse_factor(bad)


def test_parse_list_sorts_and_dedups():
    assert [f.name for f in parse_factors("ds4, og 1 up2")] == ["up2", "og", "ds4"]


@pytest.mark.parametrize("given", [["og,ds2,ds4"], ["og", "ds2", "ds4"], ["og,", "ds2,", "4"], ["1,2", "ds4"],
                                   "og ds2 ds4", ["1", "2.0", "4"], [1, 2.0, "ds4"]])
def test_every_list_form_of_the_readme_gives_the_same_ladder(given):
    assert [f.name for f in parse_factors(given)] == ["og", "ds2", "ds4"]


def test_a_bad_item_in_a_list_is_named():
    with pytest.raises(InputError, match="3.0.* not a power of two"):
        parse_factors(["og,ds3"])


def test_pixel_size_and_shape():
    f = Factor(4.0)
    assert f.pixel_size(0.08) == pytest.approx(0.32)
    assert f.pixel_size(None) is None
    assert f.shape((512, 256)) == (128, 64)
    assert Factor(0.25).shape((10, 20)) == (40, 80)


def test_crop_to_coarsest_multiple():
    assert coarsest_step(default_ladder()) == 16
    rows, cols = crop_slices((520, 696), 16)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (512, 688)
    rows, cols = crop_slices((520, 696), 16, anchor="center")
    assert (rows.start, cols.start) == (4, 4)
