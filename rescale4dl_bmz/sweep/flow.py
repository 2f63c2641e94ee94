"""The sweep as a Prefect 3 flow: wiring only, the work lives in `stages.py`.

One task per factor and stage (data, train, predict, evaluate), cached on inputs and code with
results persisted under `OUT/.prefect/results`, so a rerun skips what finished; the stages also
keep their own done-markers, so a rerun resumes even where Prefect's cache is not shared (a remote
Dask cluster). Factors advance independently: when one fails, it is reported as failed and the
others go on. Without a server, Prefect starts a temporary local API in this process; with
`PREFECT_API_URL` set, the run shows up in that server's UI.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from rescale4dl_bmz.sweep.config import SweepConfig
from rescale4dl_bmz.errors import is_environment_fault

log = logging.getLogger(__name__)


def _tasks():
    """Build the Prefect tasks lazily so importing this module does not import Prefect."""
    from prefect import task
    from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy

    from rescale4dl_bmz.sweep.finish import finish
    from rescale4dl_bmz.sweep.markers import marker_key
    from rescale4dl_bmz.sweep.halving import stage_halving
    from rescale4dl_bmz.sweep.prepare import prepare
    from rescale4dl_bmz.sweep.stages import stage_data, stage_evaluate, stage_predict, stage_train

    def cached(stage: str) -> dict:
        # the stage's own done-marker is part of the key: a marker whose files changed never hits
        marker = CacheKeyFnPolicy(cache_key_fn=lambda ctx, p: marker_key(p["plan"], p["factor"], stage))
        return dict(cache_policy=INPUTS + TASK_SOURCE + marker, persist_result=True)

    return {
        "prepare": task(prepare, name="check-data-and-plan", task_run_name="check-data-and-plan",
                        persist_result=False, cache_policy=None),
        "data": task(stage_data, name="rescale", task_run_name="rescale-{factor}", **cached("data")),
        "train": task(stage_train, name="train", task_run_name="train-{factor}", **cached("train")),
        "predict": task(stage_predict, name="predict", task_run_name="predict-{factor}", **cached("predict")),
        "evaluate": task(stage_evaluate, name="evaluate", task_run_name="evaluate-{factor}",
                         **cached("evaluate")),
        "halving": task(stage_halving, name="train-halving", task_run_name="train-halving", persist_result=False,
                        cache_policy=None),  # resumes from its own halving.json
        "finish": task(finish, name="choose-pixel-size-export-report",
                       task_run_name="choose-pixel-size-export-report", persist_result=False, cache_policy=None),
    }


def sweep_flow_fn(config: SweepConfig, plan=None):
    """Body of the flow: prepare (unless a validated `plan` is given), advance every factor through
    its stages, then finish. The flow run ends Failed (its message naming each failed factor, its
    data the summary) when any factor failed, Completed otherwise.

    With `schedule: halving`, every factor's data comes first, then one task trains all of them in
    rounds (`sweep.halving`), then the survivors go on (their train stage reads the halving's marker)."""
    from rescale4dl_bmz.process.shutdown import install_handlers
    from rescale4dl_bmz.sweep.finish import Outcome
    from rescale4dl_bmz.sweep.stages import STAGES
    from rescale4dl_bmz.sweep.terminal import SweepProgress

    install_handlers()  # over Prefect's own SIGTERM handler for the flow (Prefect restores ours after)
    tasks = _tasks()
    if plan is None:
        plan = tasks["prepare"](config)
    stages = [s for s in STAGES if not (s == "train" and config.model is not None)]
    outcomes = {f: Outcome(factor=f) for f in plan.run_factors}
    progress = SweepProgress(plan.run_factors, stages, plan.out)
    if config.schedule == "halving" and config.model is None:
        _advance(tasks, config, plan, plan.run_factors, stages, 0, 1, outcomes, progress)
        _halving(tasks, config, plan, outcomes, progress, len(stages) - 1)
        ready = [f for f, o in outcomes.items() if o.status == "running"]
        _advance(tasks, config, plan, ready, stages, 1, len(stages), outcomes, progress)
    else:
        _advance(tasks, config, plan, plan.run_factors, stages, 0, len(stages), outcomes, progress)
    progress.close()
    summary = tasks["finish"](config, plan, list(outcomes.values()))
    publish_artifacts(Path(config.out), summary)
    if summary.get("failed"):
        from prefect.states import Failed

        failed = summary["failed"]
        return Failed(message=f"{len(failed)} of {len(outcomes)} factor(s) failed: "
                              + "; ".join(f"{f} in {v['stage']}: {v['cause']}" for f, v in failed.items()),
                      data=summary)
    return summary


def _advance(tasks, config, plan, factors, stages, first: int, end: int, outcomes, progress) -> None:
    """Run `stages[first:end]` of each factor, factors independently; a factor that completes
    `stages[-1]` is done, one that fails is recorded and its remaining stages skipped."""
    from prefect.futures import as_completed

    pending = {tasks[stages[first]].submit(config, plan, f): (f, first) for f in factors}
    while pending:
        fut = next(iter(as_completed(list(pending))))
        factor, i = pending.pop(fut)
        result = fut.result(raise_on_failure=False)
        progress.update(factor, stages[i], fut.state, ok=fut.state.is_completed())
        if fut.state.is_completed():
            outcomes[factor].stages[stages[i]] = result
            if i + 1 < end:
                pending[tasks[stages[i + 1]].submit(config, plan, factor)] = (factor, i + 1)
            elif i + 1 == len(stages):
                outcomes[factor].status = "done"
        else:
            if is_environment_fault(result):
                raise result  # a full or read-only disk fails every factor alike: stop the sweep
            progress.skip(factor, len(stages) - i - 1)
            outcomes[factor].fail(stages[i], result)
            log.error("%s", result)


def _halving(tasks, config, plan, outcomes, progress, left: int) -> None:
    """The halving task over the factors whose data is done; stopped factors end here ("stopped"),
    a failed task fails them all in `train`. `left`: stages after `data` (for the progress count)."""
    from rescale4dl_bmz.sweep.halving import stopped_train_record

    factors = [f for f, o in outcomes.items() if o.status == "running"]
    if not factors:
        return
    fut = tasks["halving"].submit(config, plan, factors)
    result = fut.result(raise_on_failure=False)
    if not fut.state.is_completed():
        if is_environment_fault(result):
            raise result
        log.error("%s", result)
        for f in factors:
            progress.update(f, "train", fut.state, ok=False)
            progress.skip(f, left - 1)
            outcomes[f].fail("train", result)
        return
    for f, record in result["factors"].items():
        outcomes[f].stages["halving"] = record
        if record["status"] == "stopped":
            outcomes[f].status = "stopped"
            outcomes[f].stages["train"] = stopped_train_record(record)
            progress.update(f, "train", fut.state)
            progress.skip(f, left - 1)


def make_flow(config: SweepConfig):
    """The Prefect flow object with the task runner the config asks for.

    Its tasks' results go to OUT/.prefect/results, named here rather than left to Prefect's
    settings: a deployment's flow run read those before its config named OUT, and a sub-flow
    (this one, under flows/sweep_flow.py) would inherit its parent's storage.
    """
    from prefect import flow

    from prefect.task_runners import ThreadPoolTaskRunner

    from rescale4dl_bmz.process.settings import prefect_results_path

    runner = ThreadPoolTaskRunner(max_workers=1)  # sequential: one factor's stage at a time
    if config.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if config.dask_address:
            runner = DaskTaskRunner(address=config.dask_address)
        else:
            runner = DaskTaskRunner(cluster_kwargs={"n_workers": config.dask_workers, "threads_per_worker": 1,
                                                    "processes": True, "dashboard_address": None})
    return flow(sweep_flow_fn, name="rescale4dl-sweep", log_prints=True, validate_parameters=False,
                task_runner=runner, result_storage=prefect_results_path(config.out),
                persist_result=False)  # the flow's own summary is in the run folder; its tasks persist theirs


def run_sweep(config: SweepConfig, on_change: str = "refuse") -> dict:
    """Run the sweep flow (ephemeral API unless PREFECT_API_URL points at a server); returns the
    summary, also when factors failed (then `summary["failed"]` is not empty).

    Every check runs before the first byte is written; then the run folder is locked for the
    whole sweep (`run_lock.RunLock`), its record checked and written (`run_folder.open_record`;
    `on_change`: refuse | restart | extend), and SIGINT/SIGTERM stop it cleanly (`shutdown`).
    """
    from rescale4dl_bmz.files.run_folder import open_record, vouch_tables
    from rescale4dl_bmz.files.run_lock import RunLock
    from rescale4dl_bmz.process.settings import configure_prefect, use_tensorflow_keras
    from rescale4dl_bmz.process.shutdown import stop_on_signals
    from rescale4dl_bmz.sweep.prepare import plan_sweep, run_record, write_prepared

    use_tensorflow_keras()  # before anything imports Keras
    plan, advice = plan_sweep(config)  # bad data or config fail here, before anything is written
    record = run_record(config, plan)
    open_record(config.out, record, on_change, dry_run=True)  # a folder holding another run: before the lock
    with RunLock(config.out), stop_on_signals(), _worker_closed():
        open_record(config.out, record, on_change)
        write_prepared(config, plan, advice)
        configure_prefect(config.out)
        run_name = f"{Path(config.images).parent.name or 'sweep'}-{config.task}"
        state = make_flow(config).with_options(flow_run_name=run_name)(config, plan, return_state=True)
        # _sync: in a notebook (a running event loop) Prefect would hand back a coroutine
        summary = state.result(raise_on_failure=False, _sync=True)
        if isinstance(summary, BaseException):  # the flow itself broke (not a factor)
            raise summary
        vouch_tables(config.out)
    return summary


@contextlib.contextmanager
def _worker_closed():
    """End this process's TensorFlow worker with the sweep (Dask workers end theirs at exit)."""
    from rescale4dl_bmz.sweep.tensorflow_worker import close_shared_worker

    try:
        yield
    finally:
        close_shared_worker()


def publish_artifacts(out: Path, result: dict) -> None:
    """The results table, the figures and the report as Prefect artifacts, rendered by the Prefect UI
    (images embedded as data URIs: the UI cannot reach files on this machine)."""
    from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

    from rescale4dl_bmz.decide.select_text import table_records
    from rescale4dl_bmz.factors import parse_factor
    from rescale4dl_bmz.files.text_files import read_csv
    from rescale4dl_bmz.sweep.report_page import image_data_uri
    from rescale4dl_bmz.sweep.report_tables import COST_COLUMNS, QUALITY_COLUMNS, human_table

    if (out / "summary.csv").exists():
        table = read_csv(out / "summary.csv")
        if "grid" in table:
            table = table[(table["grid"] == "native") | table["grid"].isna()]
        table = table.assign(scale=[parse_factor(f).scale for f in table["factor"]]).sort_values("scale")
        keep = list(dict.fromkeys(QUALITY_COLUMNS + COST_COLUMNS))
        create_table_artifact(key="sweep-summary", table=table_records(human_table(table, keep)),
                              description=result.get("headline", "sweep results (native grid)"))
    figures = out / "figures"
    for key, name, what in (("iou-vs-pixel-size", "iou_vs_coverage.png", "IoU against pixel size (native grid)"),
                            ("example-segmentations", "examples.png", "the same field at each pixel size"),
                            ("cell-diameters", "diameters.png", "annotated and predicted cell diameters")):
        if (figures / name).exists():
            create_image_artifact(image_url=image_data_uri(figures / name), key=key, description=what)
    if result.get("report"):
        md = Path(result["report"]).read_text(encoding="utf-8")
        md = re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)",
                    lambda m: f"![{m.group(1)}]({image_data_uri(out / m.group(2))})"
                    if (out / m.group(2)).exists() else m.group(0), md)
        create_markdown_artifact(key="sweep-report", markdown=md, description="rescale4dl sweep report")

