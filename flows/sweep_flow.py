"""Prefect entry point for deployments: `rescale4dl-sweep` from a YAML sweep config.

Serve it with `prefect deploy --all` (see prefect.yaml beside this file) against a running
`prefect server`, or run it directly: `python flows/sweep_flow.py CONFIG.yaml`.
The computation lives in the library (rescale4dl_bmz.sweep.stages); this file only loads the config.

Prefect reads its settings from the environment once, when it is imported. Run directly, this
file applies the config's settings (offline, quiet, results under OUT/.prefect/results) before it
imports Prefect. A deployment's flow run has imported Prefect, and then this file, before its
parameters name the config: there the environment comes from the work pool (prefect.yaml's
`job_variables`), and the sweep flow names OUT/.prefect/results as its result storage itself
(`rescale4dl_bmz.sweep.flow.make_flow`), so both routes keep the results in the run folder.
"""

from __future__ import annotations

import sys

from rescale4dl_bmz.process.settings import configure_prefect
from rescale4dl_bmz.sweep.config import load_sweep_config
from rescale4dl_bmz.sweep.flow import run_sweep


def configure_from_command_line(argv: list[str]) -> str:
    """The config path of `python sweep_flow.py CONFIG.yaml`, its Prefect settings applied."""
    if len(argv) != 1:
        sys.exit("usage: python flows/sweep_flow.py CONFIG.yaml")
    configure_prefect(load_sweep_config(argv[0]).out)
    return argv[0]


if __name__ == "__main__":  # before Prefect is imported, below
    CONFIG_PATH = configure_from_command_line(sys.argv[1:])

from prefect import flow  # noqa: E402  (after the settings, when run as a script)


@flow(name="rescale4dl-sweep-from-config", log_prints=True)
def sweep_from_config(config_path: str) -> dict:
    """Load the YAML config and run the sweep flow as a sub-flow (every check first, then the run
    folder's lock and record, as `rescale4dl sweep` does)."""
    return run_sweep(load_sweep_config(config_path))


if __name__ == "__main__":
    sweep_from_config(CONFIG_PATH)
