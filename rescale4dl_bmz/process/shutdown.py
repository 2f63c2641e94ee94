"""Clean shutdown on SIGINT / SIGTERM: stop the child processes and exit 130 / 143 within seconds.

`stop_on_signals()` installs handlers (main thread only) that end this process's children at once
(training processes, Dask workers, the temporary Prefect server), run the registered cleanups
(the run lock removes half-written files and releases the folder), and then either exit the
process at once (`hard_exit`, set by the command line: unwinding through Prefect would wait a
minute on a server that a signal to the process group has already stopped) or raise `Interrupted`
(library use, e.g. a notebook). Stages write their done-marker last, so the interrupted stage
stays unfinished and the next run redoes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Callable, Iterator

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SERVER_MARKERS = ("uvicorn", "prefect.server")
_CLEANUPS: list[Callable[[], None]] = []
hard_exit = False  # the command line sets it: exit right after the cleanups


def on_interrupt(cleanup: Callable[[], None]) -> Callable[[], None]:
    """Register `cleanup` to run when a signal stops the run; returns a function that unregisters it."""
    _CLEANUPS.append(cleanup)
    return lambda: _CLEANUPS.remove(cleanup) if cleanup in _CLEANUPS else None


class Interrupted(BaseException):
    """The run was stopped by a signal; `exit_code` is 128 + the signal number (130, 143)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


def _is_server(p) -> bool:
    try:
        return any(m in " ".join(p.cmdline()) for m in _SERVER_MARKERS)
    except Exception:
        return False


def stop_children(include_server: bool = True, grace_s: float = 5.0) -> int:
    """Terminate this process's descendants (SIGTERM, then SIGKILL after `grace_s`); how many."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    targets = [p for p in children if include_server or not _is_server(p)]
    end_processes(targets, grace_s)
    return len(targets)


def end_processes(processes: list, grace_s: float = 5.0) -> None:
    """SIGTERM each psutil process, then SIGKILL those still alive after `grace_s`."""
    import psutil

    for p in processes:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


def _handler(signum, frame) -> None:
    for s in SIGNALS:  # a second signal while stopping must not interrupt the cleanup
        signal.signal(s, signal.SIG_IGN)
    exc = Interrupted(signum)
    log.warning("%s received: stopping", signal.Signals(signum).name)
    stop_children(include_server=hard_exit, grace_s=3.0)
    if not hard_exit:
        raise exc
    for cleanup in list(reversed(_CLEANUPS)):
        try:
            cleanup()
        except Exception as err:  # pragma: no cover - best effort while exiting
            log.warning("cleanup after %s failed: %s", exc, err)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # closed, or busy in the interrupted code
            pass
    # straight to the file descriptor: text printed through sys.stderr from inside the handler was
    # seen to vanish (the interrupted thread's stream state), and os._exit flushes nothing
    os.write(2, f"rescale4dl: {exc}; the unfinished stage will be redone: rerun the same command to "
                "resume\n".encode())
    os._exit(exc.exit_code)


def install_handlers() -> None:
    """Make SIGINT/SIGTERM stop the children and raise `Interrupted` (main thread only; no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, _handler)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM stop the children and raise `Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    install_handlers()
    try:
        yield
    except Interrupted:
        stop_children(include_server=True, grace_s=3.0)
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
