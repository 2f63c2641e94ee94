"""rescale4dl_bmz: find the pixel size at which deep-learning segmentation works best.

The public API is re-exported lazily so `import rescale4dl_bmz` stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "Factor": "factors",
    "parse_factor": "factors",
    "parse_factors": "factors",
    "rescale_image": "data.rescale",
    "rescale_mask": "data.rescale",
    "instance_to_semantic": "data.labels",
    "semantic_to_instances": "data.labels",
    "InputError": "errors",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
