"""Length units in micrometres: one table for image-file calibrations and bioimage.io axes.

`UNIT_IN_UM` holds every space unit of the bioimage.io spec 0.5 plus the spellings ImageJ, OME
and deepImageJ write (um, µm, μm, micron, nm, ...); keys are lower case. `unit_to_um` looks a
unit up as written (any case, surrounding spaces, ImageJ's escaped micro sign).

`METRIC_UNIT_IN_UM` leaves out the non-metric units (inch, foot, ...): an image calibrated in
inches carries a scanner's or an editor's dots-per-inch default, not a microscope's calibration,
so no pixel size is read from it (`files.dataset`, and deepImageJ's text pixel sizes, which
repeat an ImageJ calibration).
"""

from __future__ import annotations

UNIT_IN_UM: dict[str, float] = {
    # spec 0.5 space units
    "yoctometer": 1e-18, "zeptometer": 1e-15, "attometer": 1e-12, "femtometer": 1e-9, "picometer": 1e-6,
    "angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4,
    "decimeter": 1e5, "meter": 1e6, "hectometer": 1e8, "kilometer": 1e9, "megameter": 1e12,
    "gigameter": 1e15, "terameter": 1e18, "petameter": 1e21, "exameter": 1e24, "zettameter": 1e27,
    "yottameter": 1e30, "inch": 25400.0, "foot": 304800.0, "yard": 914400.0, "mile": 1.609344e9,
    "parsec": 3.0856775814913673e22,
    # as ImageJ, OME and deepImageJ write them (µ: micro sign U+00B5, μ: Greek mu U+03BC)
    "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0, "micron": 1.0, "microns": 1.0, "micrometre": 1.0,
    "micrometers": 1.0, "nm": 1e-3, "nanometers": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6,
}

NON_METRIC_UNITS = ("inch", "foot", "yard", "mile", "parsec")
METRIC_UNIT_IN_UM: dict[str, float] = {u: v for u, v in UNIT_IN_UM.items() if u not in NON_METRIC_UNITS}


def unit_to_um(unit, *, metric_only: bool = False) -> float | None:
    """Micrometres per `unit` (e.g. "nm" -> 0.001, "Micron" -> 1.0); None for an unknown unit
    (and, with `metric_only`, for inches and the other non-metric units)."""
    key = str(unit).strip().lower().replace("\\u00b5", "\u00b5")
    return (METRIC_UNIT_IN_UM if metric_only else UNIT_IN_UM).get(key)
