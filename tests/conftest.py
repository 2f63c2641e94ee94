"""Shared fixtures (the real data in ../shared/data, one Prefect API for the session), a headless,
offline environment, and the test tiers.

Tiers: every test is exactly one of `unit` (pure computation on tiny arrays, seconds),
`integration` (real libraries or processes on small data: TensorFlow builds and short training,
ImageJ, bioimage.io packaging) or `e2e` (whole sweeps, the demo, the notebook, real-data and
pretrained sweeps, interrupts). The tier comes from the test's own marker if it has one, else
from `NODE_TIERS` (node-id patterns, for files that mix tiers), else from `FILE_TIERS`; a test
file missing from `FILE_TIERS` stops the collection, so a new file must be classified here.
`python -m pytest -m "not e2e"` is the fast selection for working; CI runs everything.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from rescale4dl_bmz.process.settings import use_tensorflow_keras  # noqa: E402

use_tensorflow_keras()  # as every entry point does, before anything imports Keras
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("DO_NOT_TRACK", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RESCALE4DL_SHARED_DATA", ROOT.parent / "shared" / "data"))

TIERS = ("unit", "integration", "e2e")

FILE_TIERS = {
    "test_advise.py": "unit",
    "test_architecture.py": "unit",
    "test_cli_help.py": "unit",
    "test_config.py": "unit",
    "test_evaluate_cli.py": "unit",
    "test_export.py": "integration",
    "test_factors.py": "unit",
    "test_flows.py": "e2e",
    "test_halving_rounds.py": "e2e",  # real trainings in rounds (U-Net and StarDist)
    "test_halving_rule.py": "unit",
    "test_halving_sweep.py": "e2e",
    "test_imagej.py": "integration",
    "test_labels.py": "unit",
    "test_ladder.py": "unit",
    "test_metrics_evaluation.py": "unit",
    "test_metrics_instance.py": "unit",
    "test_metrics_morphology.py": "unit",
    "test_metrics_semantic.py": "unit",
    "test_metrics_stats.py": "unit",
    "test_models_learning.py": "e2e",
    "test_models_predict_cli.py": "integration",
    "test_models_receptive_field.py": "integration",
    "test_models_training.py": "integration",
    "test_models_unet.py": "unit",
    "test_tensorflow_worker.py": "e2e",  # several worker processes, each importing TensorFlow and training
    "test_notebook.py": "e2e",
    "test_plan.py": "unit",
    "test_prefect_server.py": "e2e",
    "test_process_settings.py": "integration",  # imports every module in a fresh process
    "test_pretrained.py": "e2e",  # every test needs a trained, packaged model (about 20 s)
    "test_pretrained_sweep.py": "e2e",
    "test_real_data_sweeps.py": "e2e",
    "test_report.py": "unit",
    "test_rescale.py": "unit",
    "test_run_safety.py": "unit",
    "test_select.py": "unit",
    "test_semantic_macro.py": "e2e",  # ImageJ takes 30 s to close after this macro; test_imagej is fast
    "test_sweep.py": "e2e",
    "test_sweep_failures.py": "e2e",
    "test_sweep_interrupts.py": "e2e",
    "test_streamed_rescale.py": "unit",
    "test_sweep_stages.py": "unit",
    "test_tables.py": "unit",
    "test_terminal.py": "unit",
}

# fnmatch patterns on the node id without "tests/" (first match wins), for files that mix tiers.
# Integration tests that train or package for over ~10 s (on 2 CPU cores) go to e2e, so that
# `-m "not e2e"` stays near a minute; each file keeps its quick real-library tests in integration.
NODE_TIERS = {
    "test_ladder.py::test_console_script_entry_point": "integration",  # a real subprocess of the installed script
    **dict.fromkeys([
        "test_export.py::test_semantic_package_*", "test_export.py::test_covers_*", "test_export.py::test_onnx_*",
        "test_export.py::test_sample_images_*", "test_export.py::test_macro_turns_*",
        "test_export.py::test_deepimagej_*", "test_export.py::test_instance_package_*",
        "test_export.py::test_unknown_pixel_size_claims_no_physical_size",   # trained packages, bioimageio test_model
        "test_models_training.py::test_rerun_gives_the_same_weights",
        "test_models_training.py::test_plateau_reduces_learning_rate_and_stops_early",
        "test_models_training.py::test_stardist_model_folder_and_prediction",
        "test_models_training.py::test_interrupted_training_leaves_nothing",
        "test_models_training.py::test_existing_folder_is_refused_unless_overwritten_semantic_masks_given",
        "test_models_predict_cli.py::test_train_command_writes_a_model",
        "test_models_predict_cli.py::test_predict_command_writes_one_tiff_per_image",
        "test_models_predict_cli.py::test_predict_command_bad_input_exits_2",
        "test_models_predict_cli.py::test_instance_train_and_predict",
    ], "e2e"),
}

# tests whose flows run in this process: they share `prefect_api` (their own subprocesses, the
# `rescale4dl sweep` command as users run it, keep starting their own ephemeral API)
PREFECT_FILES = {"test_sweep.py", "test_sweep_failures.py", "test_real_data_sweeps.py", "test_pretrained_sweep.py",
                 "test_flows.py"}


def tier_of(item) -> str | None:
    """The item's tier: its own marker, else the node-id table, else the file table (None: unclassified)."""
    own = [name for name in TIERS if item.get_closest_marker(name) is not None]
    if len(own) > 1:
        raise pytest.UsageError(f"{item.nodeid} is marked with more than one tier: {own}")
    if own:
        return own[0]
    node = item.nodeid.split("tests/", 1)[-1]
    for pattern, tier in NODE_TIERS.items():
        if fnmatch.fnmatchcase(node, pattern):
            return tier
    if item.get_closest_marker("slow") is not None:
        return "e2e"  # long-running variants stay out of the fast selection
    return FILE_TIERS.get(Path(str(item.fspath)).name)


def pytest_collection_modifyitems(config, items):
    """Give every test its tier marker; refuse test files that are not classified in FILE_TIERS."""
    unclassified = set()
    for item in items:
        tier = tier_of(item)
        if tier is None:
            unclassified.add(Path(str(item.fspath)).name)
        elif item.get_closest_marker(tier) is None:
            item.add_marker(getattr(pytest.mark, tier))
    if unclassified:
        raise pytest.UsageError(f"test file(s) without a tier: {', '.join(sorted(unclassified))}; "
                                f"add them to FILE_TIERS in tests/conftest.py ({' | '.join(TIERS)})")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real microscopy data); tests using it skip only where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """One Prefect API for the whole session (Prefect's own test harness: a temporary database and
    one server process), instead of the user's ~/.prefect database; its URL is the API URL of
    every flow run in this process. Child processes do not see it."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL, PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect_results")  # where no run folder says otherwise
    with prefect_test_harness(server_startup_timeout=180), \
            temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}):
        yield PREFECT_API_URL.value()


@pytest.fixture(autouse=True)
def _prefect_for_flow_tests(request):
    """Tests in PREFECT_FILES run their in-process flows against the session's `prefect_api`."""
    if Path(str(request.node.fspath)).name in PREFECT_FILES:
        request.getfixturevalue("prefect_api")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With RESCALE4DL_REQUIRE_ALL=1 (CI), a skipped test is a failure: CI has every dependency."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("RESCALE4DL_REQUIRE_ALL") == "1" and "xfail" not in report.keywords:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {report.longrepr}"
