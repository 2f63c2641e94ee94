"""A real `prefect server` on 127.0.0.1: a tiny sweep runs against it and shows up complete in its API and UI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from rescale4dl_bmz.sweep.config import make_sweep_config
from rescale4dl_bmz.files.demo_data import write_demo_dataset

TRAINING = {"architecture": {"kind": "unet", "depth": 2, "base_filters": 4}, "steps": 4, "steps_per_epoch": 2,
            "batch_size": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect_home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("prefect server did not start:\n" + (home / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {"url": url, "api": f"{url}/api", "home": home, "env": env}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # stopped by its PID (its whole process group)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_sweep_against_a_real_server(prefect_server, tmp_path):
    images, masks = write_demo_dataset(tmp_path / "data")
    out = tmp_path / "run"
    config = make_sweep_config(images=images, masks=masks, out=out, task="semantic", factors=["og", "ds2"],
                               test_images=["q4"], training=TRAINING, export=False)
    (tmp_path / "sweep.yaml").write_text(config.to_yaml())
    env = {**prefect_server["env"], "PREFECT_API_URL": prefect_server["api"]}
    done = subprocess.run([sys.executable, "-m", "rescale4dl_bmz", "sweep", str(tmp_path / "sweep.yaml")],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "summary.csv").is_file()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server["api"]}):
        with get_client(sync_client=True) as client:
            flow_runs = client.read_flow_runs()
            sweep_runs = [r for r in flow_runs if client.read_flow(r.flow_id).name == "rescale4dl-sweep"]
            assert len(sweep_runs) == 1
            run = sweep_runs[0]
            assert run.state.type.value == "COMPLETED"
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            names = sorted(t.name for t in tasks)
            for stage in ("rescale", "train", "predict", "evaluate"):
                for factor in ("og", "ds2"):
                    assert f"{stage}-{factor}" in names, names
            assert {t.state.type.value for t in tasks} == {"COMPLETED"}
            keys = {a.key for a in client.read_artifacts() if a.flow_run_id == run.id}
            assert {"sweep-summary", "sweep-report"} <= keys

    ui = httpx.get(prefect_server["url"] + "/", timeout=10, follow_redirects=True)
    assert ui.status_code == 200
    assert "<html" in ui.text.lower()
