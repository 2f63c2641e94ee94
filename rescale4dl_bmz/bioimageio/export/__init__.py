"""bioimage.io model packages (spec 0.5) of a sweep's chosen model: one package for the Model Zoo
and deepImageJ.

``export_package(run_dir, factor=None, out_zip=..., metadata=..., run_test=True)`` writes the
package and returns its path; ``check_package(zip)`` runs bioimageio.core's test offline.
Modules: metadata (authors, maintainers, version, data), network (model folder -> one Keras
network), tensors (test tensors), weights (keras_v3, keras_hdf5, SavedModel, ONNX), samples
(ImageJ TIFFs), covers (2:1 images), docs (README, sweep table, citations), describe (the
ModelDescr), package (the steps, and GitHub handles offline).
"""

from __future__ import annotations

import importlib

_API = {"export_package": "package", "check_package": "package", "PackageTestError": "package",
        "VARIANTS": "package", "package_name": "package", "PackageMetadata": "metadata",
        "make_metadata": "metadata"}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
