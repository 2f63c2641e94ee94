"""Words the whole package shares, defined once (the config, the CLI and the rules all read them)."""

from __future__ import annotations

# How `select` chooses the factor after a sweep (see `decide.select`).
CRITERIA = ("coarsest-equivalent", "max-iou", "iou-x-throughput", "diameter-fidelity")
