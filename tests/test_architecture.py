"""The package's layout, drawn from its own imports: each sub-package imports only from those
below it in the README's list, no module grows past about 400 lines, and Prefect is imported in
the flow module alone (so everything else runs, and is tested, without it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rescale4dl_bmz"
# bottom to top, as in the README's "Development" section; "root" is the package's own modules
LAYERS = ["root", "process", "files", "data", "metrics", "models", "decide", "imagej", "bioimageio", "sweep", "cli"]
MAX_LINES = 420


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "root"


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_every_sub_package_is_in_the_layer_list():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == set(LAYERS) - {"root"}


def test_imports_only_point_to_lower_layers():
    upward = []
    for path in _modules():
        if path.name == "__main__.py":
            continue  # `python -m rescale4dl_bmz` starts the CLI: the one arrow from the root to the top
        here = _room(path)
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] != "rescale4dl_bmz":
                continue
            there = parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else "root"
            if LAYERS.index(there) > LAYERS.index(here):
                upward.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not upward, "\n".join(upward)


def test_no_module_is_long():
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


@pytest.mark.parametrize("library", ["prefect", "prefect_dask"])
def test_only_the_flow_module_imports_prefect(library):
    importers = [str(p.relative_to(PACKAGE)) for p in _modules()
                 if any(m.split(".")[0] == library for m in _imports(p))]
    assert set(importers) <= {"sweep/flow.py"}, importers
