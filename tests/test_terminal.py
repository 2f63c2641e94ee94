"""The terminal: progress with counts and ETA, cached stages named once, noise dropped, failures first."""

from __future__ import annotations

import logging
import os
import time

from rescale4dl_bmz.sweep.tensorflow_worker import log as training_log
from rescale4dl_bmz.process.logs import TerminalHandler
from rescale4dl_bmz.sweep.stages import log as sweep_log
from rescale4dl_bmz.sweep.terminal import SweepProgress, summary_block

STAGES = ["data", "train", "predict", "evaluate"]


def test_progress_counts_estimates_and_names_reused_stages_once(tmp_path, caplog):
    (tmp_path / "og").mkdir()
    marker = tmp_path / "og" / "data.done.json"
    marker.write_text("{}")
    old = time.time() - 3600
    os.utime(marker, (old, old))  # finished by an earlier run
    progress = SweepProgress(["og", "ds2"], STAGES, tmp_path, bar=False)
    with caplog.at_level(logging.INFO, logger="rescale4dl_bmz.sweep.terminal"):
        progress.update("og", "data")
        assert progress.eta() == "time left: after the first rescale"  # a reused stage tells no duration
        progress.update("ds2", "data")
        assert progress.eta() == "time left: after the first train"
        progress.update("og", "train")
        assert progress.eta().startswith("about ")
        progress.update("ds2", "train", ok=False)
        progress.skip("ds2", 2)
        progress.close()
    text = caplog.text
    assert "og rescale reused" not in text  # reused stages are not listed one by one...
    assert "reused from the earlier run in this folder (1 of 8 stages): og (rescale)" in text  # ...but once
    assert "ds2 train FAILED (4 of 8 stages, factors finished 1 of 2" in text
    assert progress.count == 6 and progress.finished == {"ds2"}


def _record(name, level, msg):
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_quiet_handler_drops_what_a_user_cannot_act_on():
    quiet, loud = TerminalHandler(verbose=False), TerminalHandler(verbose=True)
    noise = [_record("prefect.task_runs", logging.INFO, "Finished in state Cached(type=COMPLETED)"),
             _record("prefect.task_runs", logging.ERROR, "Task run failed with exception\nTraceback ..."),
             _record(training_log.name, logging.INFO, "Traceback (most recent call last):"),
             _record(training_log.name, logging.INFO, "  File \"x.py\", line 3"),
             _record(training_log.name, logging.INFO, "E0000 00:00:1796297584.974051 4956 util.cc:131] oneDNN")]
    kept = [_record(training_log.name, logging.INFO, "epoch 1/2  steps 20  loss 0.7364"),
            _record(sweep_log.name, logging.WARNING, "advice: use bigger images")]
    assert not any(quiet.filter(r) for r in noise)
    assert all(quiet.filter(r) for r in kept) and all(loud.filter(r) for r in noise)


def test_summary_block_starts_with_the_failures():
    text = summary_block({"failed": {"ds8": {"stage": "train", "cause": "out of memory", "log": "/o/ds8/train.log"}},
                          "headline": "recommended pixel size: 0.16 µm (factor ds2); why", "report": "/o/report.md"},
                         "/o")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("─")]
    assert lines[0] == "1 of 1 factor(s) FAILED; the results are partial:"
    assert lines[1] == "FAILED  ds8 failed during training: out of memory. Full log: /o/ds8/train.log."
    assert lines[2].startswith("Recommended pixel size: 0.16 µm") and "/o/report.html" in text
