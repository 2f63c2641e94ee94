"""Rescaling factors (s = 2^k), their names, ladders and pixel-size arithmetic.

A factor s > 1 downsamples by s (coarser pixels), s < 1 upsamples by 1/s.
Pixel size at factor s = original pixel size × s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.vocabulary import CROPS

DEFAULT_FACTOR_NAMES = ("up4", "up2", "og", "ds2", "ds4", "ds8", "ds16")


@dataclass(frozen=True, order=True)
class Factor:
    """One rung of the ladder. Ordered by `scale` (finest first)."""

    scale: float

    def __post_init__(self) -> None:
        k = math.log2(self.scale) if self.scale > 0 else float("nan")
        if not (self.scale > 0 and k == round(k)):
            raise InputError(f"factor {self.scale!r} is not a power of two (expected 0.25, 0.5, 1, 2, 4, ...)")

    @property
    def exponent(self) -> int:
        """k in s = 2^k."""
        return int(round(math.log2(self.scale)))

    @property
    def name(self) -> str:
        """`og`, `ds<s>` for downsampling, `up<1/s>` for upsampling."""
        if self.exponent == 0:
            return "og"
        if self.exponent > 0:
            return f"ds{2 ** self.exponent}"
        return f"up{2 ** -self.exponent}"

    @property
    def is_down(self) -> bool:
        return self.exponent > 0

    @property
    def is_up(self) -> bool:
        return self.exponent < 0

    @property
    def step(self) -> int:
        """Integer magnification step: s for downsampling, 1/s for upsampling, 1 at og."""
        return 2 ** abs(self.exponent)

    def pixel_size(self, original_um: float | None) -> float | None:
        """Pixel size at this factor (µm), or None when the original is unknown."""
        return None if original_um is None else original_um * self.scale

    def shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of a (cropped) 2D array after rescaling by this factor."""
        if self.is_down:
            return tuple(n // self.step for n in shape)
        return tuple(n * self.step for n in shape)

    def __str__(self) -> str:
        return self.name


def parse_factor(text: str | float | int | Factor) -> Factor:
    """A factor from its name (`ds2`, `up4`, `og`) or number (`2`, `0.5`, `0.25`)."""
    if isinstance(text, Factor):
        return text
    if isinstance(text, (int, float)):
        return Factor(float(text))
    t = str(text).strip().lower()
    try:
        if t == "og":
            value = 1.0
        elif t.startswith("ds"):
            value = float(int(t[2:]))
        elif t.startswith("up"):
            step = int(t[2:])
            value = 1.0 / step if step > 0 else float("nan")
        else:
            value = float(t)
    except ValueError:
        raise InputError(f"factor {text!r} is neither a name (up4 up2 og ds2 ds4 ds8 ds16) nor a number") from None
    return Factor(value)


def parse_factors(items: Iterable[str | float | Factor] | str | None) -> list[Factor]:
    """A sorted, de-duplicated ladder; None gives the default ladder.

    Names and numbers mix, separated by spaces or commas, in one string or across items (as
    `--factors og ds2`, `--factors og,ds2,ds4` and `--factors 0.5, 1, 2` give them).
    """
    if items is None:
        items = DEFAULT_FACTOR_NAMES
    if isinstance(items, (str, int, float, Factor)):
        items = [items]
    parts: list = []
    for item in items:
        parts.extend(item.replace(",", " ").split() if isinstance(item, str) else [item])
    factors = sorted({parse_factor(i) for i in parts})
    if not factors:
        raise InputError("no factors given")
    return factors


def default_ladder() -> list[Factor]:
    return parse_factors(None)


def coarsest_step(factors: Sequence[Factor]) -> int:
    """The multiple every image is cropped to so all factors tile it exactly."""
    return max((f.step for f in factors if f.is_down), default=1)


def crop_slices(shape: Sequence[int], multiple: int, anchor: str = "topleft") -> tuple[slice, slice]:
    """Slices cropping a 2D shape to a multiple of `multiple` (top-left anchored or centred)."""
    if anchor not in CROPS:
        raise InputError(f"crop anchor {anchor!r} is not 'topleft' or 'center'")
    out = []
    for n in shape[:2]:
        keep = (n // multiple) * multiple
        start = 0 if anchor == "topleft" else (n - keep) // 2
        out.append(slice(start, start + keep))
    return out[0], out[1]
