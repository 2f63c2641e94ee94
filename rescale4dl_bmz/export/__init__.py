"""bioimage.io model packages (spec 0.5) of a sweep's chosen model, for the Model Zoo and deepImageJ.

``export_package(run_dir, factor=None, out_zip=..., variant="bioimageio"|"deepimagej", run_test=True)``
writes the package and returns its path; ``check_package(zip)`` runs bioimageio.core's test.
Modules: network (model folder -> one Keras network), tensors (test tensors), weights (keras_v3,
keras_hdf5, SavedModel), docs (README, sweep table, cover), describe (the ModelDescr), package.
"""

from __future__ import annotations

import importlib

_API = {"export_package": "package", "check_package": "package", "PackageTestError": "package",
        "VARIANTS": "package", "package_name": "package"}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
