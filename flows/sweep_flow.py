"""Prefect entry point for deployments: `rescale4dl-sweep` from a YAML sweep config.

Serve it with `prefect deploy --all` (see prefect.yaml beside this file) against a running
`prefect server`, or run it directly: `python flows/sweep_flow.py CONFIG.yaml`.
The computation lives in the library (rescale4dl_bmz.sweep.stages); this file only loads the config.
"""

from __future__ import annotations

import sys

from prefect import flow

from rescale4dl_bmz.sweep.config import load_sweep_config
from rescale4dl_bmz.sweep.flow import run_sweep


@flow(name="rescale4dl-sweep-from-config", log_prints=True)
def sweep_from_config(config_path: str) -> dict:
    """Load the YAML config and run the sweep flow as a sub-flow (every check first, then the run
    folder's lock and record, as `rescale4dl sweep` does)."""
    return run_sweep(load_sweep_config(config_path))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python flows/sweep_flow.py CONFIG.yaml")
    sweep_from_config(sys.argv[1])
