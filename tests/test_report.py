"""The report as a biologist gets it: one self-contained page, failures first in plain words,
human tables, figures that mark failed factors; and the terminal's progress and help."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from rescale4dl_bmz.sweep.figures import plot_examples, plot_iou_vs_coverage
from rescale4dl_bmz.sweep.report import failure_records, failure_sentence, gains_lines
from rescale4dl_bmz.sweep.report_page import write_report
from rescale4dl_bmz.sweep.report_tables import COST_COLUMNS, QUALITY_COLUMNS, human_table

OLD_FAILURE = ("train: RuntimeError: training into /run/og/model failed (exit 1):\nepoch 1/2\nTraceback (most recent "
               "call last):\n  File \"x.py\", line 3, in f\nValueError: the network's output does not depend on its "
               "input")


def _tables():
    rows, summary = [], []
    for factor, scale, ious in (("og", 1.0, [0.80, 0.84, 0.82]), ("ds2", 2.0, [0.81, 0.83, 0.80]),
                                ("ds4", 4.0, [0.6, 0.65, 0.62])):
        for grid in ("native", "sampled"):
            rows += [{"factor": factor, "grid": grid, "image": f"i{k}", "iou": v} for k, v in enumerate(ious)]
            summary.append({"factor": factor, "scale": scale, "grid": grid, "iou_mean": float(np.mean(ious)),
                            "iou_ci_low": min(ious), "iou_ci_high": max(ious), "p_vs_best": 0.00012 * scale,
                            "pct_diameter_per_pixel": 7.2 * scale, "throughput": 2620.4 * scale ** 2,
                            "bytes_per_object": 31000 / scale ** 2, "wall_time_s": 640.0 / scale, "steps": 4000.0,
                            "inference_s_per_image": 0.123456789, "status": "done", "gt_mean_diameter_px": 14 / scale,
                            "pixel_size_um": 0.08 * scale})
    return pd.DataFrame(rows), pd.DataFrame(summary)


def test_failures_in_both_record_forms_read_as_one_plain_line():
    new = failure_records({"ds8": {"stage": "train", "cause": "out of memory", "log": "/run/ds8/train.log"}})
    old = failure_records({"og": OLD_FAILURE})
    assert failure_sentence(new[0]) == "ds8 failed during training: out of memory. Full log: /run/ds8/train.log."
    assert failure_sentence(old[0]) == ("og failed during training: the network's output does not depend on its "
                                        "input.")
    assert "Traceback" not in failure_sentence(old[0])


def test_tables_have_human_headers_units_and_no_scientific_notation():
    _, summary = _tables()
    native = summary[summary["grid"] == "native"]
    quality, cost = human_table(native, QUALITY_COLUMNS), human_table(native, COST_COLUMNS)
    assert list(quality.columns) == ["Factor", "Pixel size (µm)", "Status", "Mean IoU (95 % CI)", "p vs best",
                                     "Object diameter (px)", "% of diameter per pixel"]
    text = quality.to_string() + cost.to_string()
    assert not re.search(r"\d[eE][+-]\d", text) and "_" not in "".join(quality.columns)
    assert quality.loc[0, "Mean IoU (95 % CI)"] == "0.820 (0.800–0.840)"
    assert quality.loc[0, "p vs best"] == "< 0.001"
    assert cost.loc[0, "Throughput (cells / s)"] == "2,620"
    assert cost.loc[0, "Storage per cell"] == "31 kB" and cost.loc[0, "Training time"] == "10.7 min"
    assert cost.loc[0, "Prediction time per image"] == "123 ms"


def test_gains_name_the_baseline_the_selection_gives():
    class Sel:
        gains = {"objects_per_fov": {"ratio": 4.0, "basis": "measured"}, "storage_per_object": {"ratio": 0.25}}
        baseline = "up2"

    assert gains_lines(Sel()) == ["cells per field of view: 4x more than at up2; measured",
                                  "storage per cell: 4x less than at up2"]
    Sel.baseline = None
    assert gains_lines(Sel())[0].startswith("cells per field of view: 4x more than at og")


def test_report_page_is_self_contained_and_survives_a_move(tmp_path):
    per_image, summary = _tables()
    fig = plot_iou_vs_coverage(per_image, summary, tmp_path / "figures" / "iou.png", chosen="ds2",
                               pixel_size_um=0.08, failed=["ds8"])
    sections = [("!Failed factors", "- " + failure_sentence(failure_records({"og": OLD_FAILURE})[0], True)),
                ("Quality", f"![IoU]({fig.relative_to(tmp_path).as_posix()})")]
    _, html_path = write_report(tmp_path, sections, lead="Acquire at **0.16 µm per pixel**.")
    moved = tmp_path / "elsewhere" / "r.html"
    moved.parent.mkdir()
    moved.write_bytes(html_path.read_bytes())
    (tmp_path / "figures" / "iou.png").unlink()  # the page must not need it

    class Refs(HTMLParser):
        refs: list = []

        def handle_starttag(self, tag, attrs):
            self.refs += [v for k, v in attrs if k in ("src", "href")]

    parser = Refs()
    page = moved.read_text(encoding="utf-8")
    parser.feed(page)
    assert parser.refs and all(r.startswith("data:image/png;base64,") for r in parser.refs)
    # failures come first after the one-sentence recommendation, as words, not a traceback
    assert page.index("Acquire at") < page.index("Failed factors") < page.index("Quality")
    assert "Traceback" not in page


def test_examples_figure_draws_every_factor_with_legend_and_scale_bar(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(64, 64))
    gt = np.zeros((64, 64), int)
    gt[10:30, 10:30], gt[12:28, 12:28] = 2, 1
    small = (image[::2, ::2], gt[::2, ::2], gt[::2, ::2])
    path = plot_examples([("og", image, gt, gt), ("ds2", *small)], tmp_path / "ex.png", pixel_size_um=0.1)
    from matplotlib.image import imread

    assert imread(path).shape[0] > 300
