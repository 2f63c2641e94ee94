"""One writer per run folder: an OS file lock (`filelock`) held for the whole sweep.

The lock is a `flock` on `RUN_DIR/.rescale4dl.lock`: the kernel drops it when its holder dies,
even by `kill -9`, so a stale lock is simply taken over. Beside it, `.rescale4dl.holder.json`
names the holder (pid, host, start, command) for the message a second sweep gets, and lists the
holder's child processes (training, Dask workers, the temporary Prefect server) as it runs. A
sweep that takes the lock over from a killed one ends those orphans, and every sweep clears the
leftovers no live writer can own: hidden `*.part` / `*.old` files and folders (half-written
outputs) and `RUN_DIR/.tmp`, the temporary folder of the sweep and of its child processes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from rescale4dl_bmz.errors import InputError

log = logging.getLogger(__name__)

LOCK_FILE = ".rescale4dl.lock"
HOLDER_FILE = ".rescale4dl.holder.json"
TMP_DIR = ".tmp"
OWN_FILES = (LOCK_FILE, HOLDER_FILE, TMP_DIR)
_LEFTOVER_SUFFIXES = (".part", ".old", ".part.tif")
_HELD: set[str] = set()  # run folders this process holds


def held_here(out: str | Path) -> bool:
    """Whether this process, or the sweep that started it, holds the run folder's lock: the sweep
    reading its own tables, in its own process or in its TensorFlow worker (a child process)."""
    if str(Path(out).resolve()) in _HELD:
        return True
    pid = read_holder(out).get("pid")
    if not isinstance(pid, int) or not is_locked(out):
        return False
    import psutil

    try:
        return pid in {p.pid for p in psutil.Process().parents()}
    except psutil.Error:
        return False


def _process_key(p) -> dict:
    return {"pid": p.pid, "create_time": p.create_time(), "name": p.name()}


def read_holder(out: str | Path) -> dict:
    """What the holder file says (empty when absent or unreadable)."""
    try:
        data = json.loads((Path(out) / HOLDER_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_holder(holder: dict) -> str:
    if not holder:
        return "another process"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
            + (f": {holder['command']}" if holder.get("command") else ""))


def is_locked(out: str | Path) -> bool:
    """Whether a live process holds the run folder's lock (checked without keeping it)."""
    from filelock import FileLock, Timeout

    path = Path(out) / LOCK_FILE
    if not path.exists():
        return False
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def end_orphans(holder: dict, grace_s: float = 5.0) -> list[int]:
    """Terminate the recorded children of a dead holder that still run (same pid and start time)."""
    import psutil

    alive = []
    for child in holder.get("children", []):
        try:
            p = psutil.Process(int(child["pid"]))
            if abs(p.create_time() - float(child["create_time"])) < 0.01:
                alive.append(p)
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    from rescale4dl_bmz.process.shutdown import end_processes

    end_processes(alive, grace_s)
    if alive:
        log.warning("ended %d process(es) left running by the killed sweep: %s", len(alive),
                    ", ".join(str(p.pid) for p in alive))
    return [p.pid for p in alive]


def clear_leftovers(out: str | Path) -> list[Path]:
    """Remove half-written outputs (hidden `*.part` / `*.old`) and the sweep's temporary folder."""
    out = Path(out)
    removed = []
    tmp = out / TMP_DIR
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    for root, dirs, files in os.walk(out):
        for name in [*dirs, *files]:
            if name.startswith(".") and name.endswith(_LEFTOVER_SUFFIXES):
                path = Path(root) / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        dirs[:] = [d for d in dirs if not (d.startswith(".") and d.endswith(_LEFTOVER_SUFFIXES))]
    if removed:
        log.info("removed %d leftover(s) of an interrupted run in %s", len(removed), out)
    return removed


class RunLock:
    """`with RunLock(out):` -- exclusive use of a run folder, or `InputError` naming the holder.

    While held, `TMPDIR` points into `RUN_DIR/.tmp` (children inherit it), and a daemon thread
    records the process's children in the holder file every `poll_s` seconds.
    """

    def __init__(self, out: str | Path, poll_s: float = 1.0):
        self.out = Path(out)
        self.poll_s = poll_s
        self._lock = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_tmp: tuple[str | None, str | None] = (None, None)
        self.taken_over: dict = {}

    def __enter__(self) -> "RunLock":
        from filelock import FileLock, Timeout

        self.out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.out / LOCK_FILE)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise InputError(f"run folder {self.out} is in use by another sweep ({describe_holder(read_holder(self.out))}); "
                             "wait for it to end or choose another --out") from None
        self._lock = lock
        try:
            previous = read_holder(self.out)
            if previous:
                log.warning("run folder %s: taking over from a sweep that did not end cleanly (%s)", self.out,
                            describe_holder(previous))
                end_orphans(previous)
                self.taken_over = previous
            clear_leftovers(self.out)
            self._holder = {"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "command": " ".join(sys.argv[:6]), "children": []}
            self._write_holder()
            self._use_private_tmp()
            self._thread = threading.Thread(target=self._watch_children, name="rescale4dl-lock", daemon=True)
            self._thread.start()
            from rescale4dl_bmz.process.shutdown import on_interrupt

            self._unregister = on_interrupt(self._interrupted)
            _HELD.add(str(self.out.resolve()))
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    # ------------------------------------------------------------------ internals

    def _write_holder(self) -> None:
        from rescale4dl_bmz.files.text_files import write_json

        write_json(self.out / HOLDER_FILE, self._holder)

    def _use_private_tmp(self) -> None:
        tmp = self.out / TMP_DIR
        tmp.mkdir(exist_ok=True)
        self._saved_tmp = (os.environ.get("TMPDIR"), tempfile.tempdir)
        os.environ["TMPDIR"] = str(tmp.resolve())
        tempfile.tempdir = None  # recomputed from TMPDIR on next use

    def _watch_children(self) -> None:
        import psutil

        me = psutil.Process()
        seen: list = []
        while not self._stop.wait(self.poll_s):
            try:
                children = sorted((_process_key(p) for p in me.children(recursive=True)), key=lambda c: c["pid"])
            except psutil.Error:
                continue
            known = {c["pid"]: c for c in seen}
            merged = sorted({**known, **{c["pid"]: c for c in children}}.values(), key=lambda c: c["pid"])
            if merged != seen:
                seen = merged
                self._holder["children"] = merged
                try:
                    self._write_holder()
                except OSError:
                    pass

    def _interrupted(self) -> None:
        """A signal stopped the run (children already ended): clear half-written files, release."""
        self._stop.set()
        clear_leftovers(self.out)
        self._release()

    def _release(self) -> None:
        getattr(self, "_unregister", lambda: None)()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        env, tempdir = self._saved_tmp
        if os.environ.get("TMPDIR") == str((self.out / TMP_DIR).resolve()):
            if env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = env
            tempfile.tempdir = tempdir
        shutil.rmtree(self.out / TMP_DIR, ignore_errors=True)
        (self.out / HOLDER_FILE).unlink(missing_ok=True)
        _HELD.discard(str(self.out.resolve()))
        if self._lock is not None:
            self._lock.release()
            self._lock = None
