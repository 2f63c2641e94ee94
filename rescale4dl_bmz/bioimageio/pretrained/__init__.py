"""Sweep a published model: inspect and run any bioimage.io model package, without training.

``inspect_package(path) -> PackageInfo`` validates a package (a ``.zip``, an ``rdf.yaml`` /
``bioimageio.yaml`` file, or the folder holding one) offline and reports what a sweep needs;
it imports bioimageio.spec, not TensorFlow. ``load_package(path) -> PackagedModel`` loads the
weights once; ``PackagedModel.predict(image)`` keeps the contract of
``models.load_model(folder).predict``. Whatever a user can fix raises `InputError` naming the
package, before any data is rescaled.

For the sweep
-------------
``prepare``: ``info = inspect_package(config.model)`` (refuses a bad package before any rescaling;
``info.task`` is the sweep's task, ``info.pixel_size_um`` the package's own pixel size or None).
``stage_predict``: ``model = load_package(config.model)`` once per factor, ``model.predict(image)``
for every image, ``model.close()`` at the end (or ``with load_package(...) as model:``).

Modules: archive (find, parse and hash a package; validate it offline), info (`PackageInfo`),
inspection (classify the description: input, output kind, weights, pixel size, tiling), runner
(load the weights; tiled prediction around bioimageio.core's pipeline).
"""

from __future__ import annotations

import importlib

_API = {"inspect_package": "inspection", "PackageInfo": "info", "load_package": "runner",
        "PackagedModel": "runner", "plan_axis": "runner", "DEFAULT_TILE_SIZE": "runner"}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
