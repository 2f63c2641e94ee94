"""The walk-through notebook (examples/walkthrough.ipynb) runs from start to end on real data:
advise -> sweep -> report -> export, with the notebook's own tiny training budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (DATA / "ecoli_colicoords").is_dir(), reason="../shared/data is absent")
def test_walkthrough_notebook_runs_end_to_end(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("RESCALE4DL_DATA", str(DATA))
    nb = nbformat.read(ROOT / "examples" / "walkthrough.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = tmp_path / "walkthrough_run"
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "worth training" in text                      # advise printed its table
    assert "recommended pixel size" in text.lower()      # the sweep's headline (a caveat may open it)
    assert "µm" in text                                  # ... in micrometres: the pixel size is known
    assert (out / "report.html").is_file() and (out / "model.zip").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2                              # the IoU figure and the example panels
