"""flows/: the deployment's entry point, loaded the way a deployment's flow run loads it, runs a tiny
sweep and keeps Prefect's results in the run folder (OUT/.prefect/results), not in Prefect's home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from rescale4dl_bmz.files.demo_data import write_demo_dataset
from rescale4dl_bmz.sweep.config import make_sweep_config


ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "flows"
TINY_TRAINING = {"architecture": {"kind": "unet", "depth": 1, "base_filters": 2}, "steps": 2, "steps_per_epoch": 1,
                 "batch_size": 2}

# A deployment's flow run, in a fresh process: Prefect is imported (its settings read from the
# environment) before the entry point is loaded by path, and the config arrives as a parameter.
FLOW_RUN = """
import json, sys
import prefect
from prefect.flows import load_flow_from_entrypoint

flow = load_flow_from_entrypoint(sys.argv[1])
state = flow(config_path=sys.argv[2], return_state=True)
summary = state.result(raise_on_failure=False)
print("SUMMARY " + json.dumps({"state": state.type.value, "n_done": summary.get("n_done"),
                               "failed": sorted(summary.get("failed") or {})}))
"""


def deployment() -> dict:
    """The sweep deployment declared in flows/prefect.yaml."""
    spec = yaml.safe_load((FLOWS / "prefect.yaml").read_text())
    (sweep,) = [d for d in spec["deployments"] if d["name"] == "sweep"]
    return sweep


def test_the_deployment_entry_point_keeps_prefect_results_in_the_run_folder(tmp_path):
    images, masks = write_demo_dataset(tmp_path / "data")
    out = tmp_path / "run"
    config = make_sweep_config(images=images, masks=masks, out=out, task="semantic", factors=["ds2"],
                               test_images=["q4"], training=TINY_TRAINING, export=False)
    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(config.to_yaml())
    home = tmp_path / "prefect_home"
    # no server here: the flow run starts a temporary one, slow to start on a busy machine
    env = {**os.environ, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for name in ("PREFECT_API_URL", "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "PREFECT_LOCAL_STORAGE_PATH"):
        env.pop(name, None)  # Prefect's defaults, as on a worker: results would go to PREFECT_HOME/storage
    done = subprocess.run([sys.executable, "-c", FLOW_RUN, deployment()["entrypoint"], str(config_path)],
                          cwd=FLOWS, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("SUMMARY ")]
    summary = json.loads(line.removeprefix("SUMMARY "))
    assert summary == {"state": "COMPLETED", "n_done": 1, "failed": []}
    assert (out / "summary.csv").is_file()
    results = [p for p in (out / ".prefect" / "results").rglob("*") if p.is_file()]
    assert results, "no Prefect results under OUT/.prefect/results"
    stray = [p for p in (home / "storage").rglob("*") if p.is_file()]
    assert not stray, f"Prefect results in Prefect's home instead of the run folder: {stray[:3]}"
