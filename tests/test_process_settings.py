"""Process-wide settings happen only when an entry point asks: importing the package changes no
environment variable and no working directory, and every logger of the package is named under
`rescale4dl_bmz`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Every module, imported in a fresh process. models.callbacks is left out: it subclasses Keras'
# Callback, so importing it imports Keras (after choosing Keras' backend, which is the point).
IMPORT_ALL = """
import importlib, json, logging, os, pkgutil
import rescale4dl_bmz

env, cwd = dict(os.environ), os.getcwd()
for module in pkgutil.walk_packages(rescale4dl_bmz.__path__, "rescale4dl_bmz."):
    if not module.name.endswith("__main__") and module.name != "rescale4dl_bmz.models.callbacks":
        importlib.import_module(module.name)
print(json.dumps({"changed": sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
                  "cwd_kept": os.getcwd() == cwd,
                  "loggers": [n for n in logging.root.manager.loggerDict if n.startswith("rescale4dl")]}))
"""


def test_importing_the_package_sets_nothing_and_logs_under_one_root(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["changed"] == [] and found["cwd_kept"]
    assert found["loggers"] and all(n.split(".")[0] == "rescale4dl_bmz" for n in found["loggers"]), found["loggers"]

