"""Tables keep names as text: image "00003" stays "00003" from a per-factor table to the merged ones."""

from __future__ import annotations

import pandas as pd

from rescale4dl_bmz.files.text_files import read_csv, write_csv


def test_names_survive_a_csv_round_trip(tmp_path):
    table = pd.DataFrame({"factor": ["og", "ds2", "og"], "image": ["00003", "NA", "1e5"], "iou": [0.5, None, 0.25]})
    write_csv(tmp_path / "t.csv", table)
    back = read_csv(tmp_path / "t.csv")
    assert back["image"].tolist() == ["00003", "NA", "1e5"]
    assert back["iou"].isna().tolist() == [False, True, False]


def test_merged_sweep_tables_keep_image_names(tmp_path):
    """The sweep's `finish` merges per-factor tables through `read_csv`; `select` reads them back."""
    from rescale4dl_bmz.files.run_folder import _read_csv

    write_csv(tmp_path / "per_image.csv", pd.DataFrame({"factor": ["og"], "image": ["00008"], "iou": [0.7]}))
    table = _read_csv(tmp_path / "per_image.csv", ("factor", "image", "iou"), required=True)
    assert table["image"].tolist() == ["00008"]
