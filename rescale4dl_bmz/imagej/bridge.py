"""The Java bridge: run our Fiji macros (fiji_macros/*.ijm) in ImageJ from Python.

Two routes, one interface (`ImageJ`):
- a Fiji installation, through pyimagej (`fiji=DIR`, `--fiji DIR` or env RESCALE4DL_FIJI):
  `imagej.init(DIR, mode="headless")`; Fiji's legacy layer runs ImageJ 1.x commands headless;
- offline default: plain ImageJ 1.x (`ij.jar`: env RESCALE4DL_IJ_JAR, else Debian's
  /usr/share/java/ij.jar) through JPype, inside a private Xvfb display (truly headless ImageJ
  1.x skips or hangs on commands with options).

Design: the JVM lives in a worker subprocess (`worker.py`) in its own process group,
one per `ImageJ` session, reused for every image of a folder. Every request has a timeout: on
expiry the whole group (worker, JVM, Xvfb) is killed, an `ImageJTimeout` names the file, and
the next request starts a fresh worker. A JVM inside this process could neither be killed nor
restarted, and under Xvfb a macro error can open a dialog nobody closes. Macros run with the
interpreter's error dialogs off; an error becomes an `ImageJError` naming the macro and file.

Images travel as TIFF files in a private temporary folder (RAM-backed /dev/shm when present).
Finding Java, ImageJ and the macros: `imagej.install`; whole-file runs: `imagej.batch`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from rescale4dl_bmz.files.label_arrays import check_labels, compact_labels
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.atomic import atomic_path
from rescale4dl_bmz.imagej.install import ImageJUnavailable, check_tools, find_fiji, find_ij_jar, macro_path

DEFAULT_TIMEOUT = 120.0  # seconds per request (one image)
STARTUP_TIMEOUT = 90.0
MAX_EXACT_LABEL = 2 ** 24  # ImageJ computes in 32-bit float: integers are exact up to here


class ImageJError(RuntimeError):
    """ImageJ failed on a file (macro error, unreadable input, crash). The message names both."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


QUIT_WAIT_S = 5.0  # seconds a polite quit may take before the worker's process group is killed


class ImageJTimeout(ImageJError):
    """An ImageJ request ran past its timeout; the worker and its JVM were killed."""


# ----------------------------------------------------------------------------- the session

class ImageJ:
    """One ImageJ (one JVM, in a worker process) for many requests. Use as a context manager.

    One request at a time: share a session between threads only with a lock.

    `fiji`: a Fiji folder (pyimagej route); default: env RESCALE4DL_FIJI, else plain ij.jar.
    `timeout`: seconds allowed per request (per image); `startup_timeout`: for starting ImageJ.
    """

    def __init__(self, fiji: str | Path | None = None, *, ij_jar: str | Path | None = None,
                 timeout: float = DEFAULT_TIMEOUT, startup_timeout: float = STARTUP_TIMEOUT):
        self.fiji = find_fiji(fiji)
        self.ij_jar = None if self.fiji else find_ij_jar(ij_jar)
        check_tools(self.fiji)
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.version: str | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._display: int | None = None
        self._stderr = None
        self._buffer = b""
        self._tmp: Path | None = None

    # -- lifecycle
    def __enter__(self) -> "ImageJ":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten session must not leave a JVM behind
        try:
            self._kill()
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
        except Exception:
            pass

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "ImageJ":
        """Start the worker (Xvfb + JVM, or Fiji) unless it is running."""
        if self.running:
            return self
        self._kill()
        if self._tmp is None:
            shm = Path("/dev/shm")
            base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
            self._tmp = Path(tempfile.mkdtemp(prefix="rescale4dl-ij-", dir=base))
        worker = Path(__file__).with_name("worker.py")
        cmd = [sys.executable, str(worker)]
        cmd += ["--fiji", str(self.fiji)] if self.fiji else ["--ij-jar", str(self.ij_jar)]
        cmd += ["--workdir", tempfile.mkdtemp(prefix="worker-", dir=self._tmp)]  # removed with _tmp
        self._stderr = open(self._tmp / "worker.log", "w+b")
        t0 = time.perf_counter()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                      start_new_session=True, cwd=self._tmp)
        self._buffer = b""
        reply = self._receive(self.startup_timeout, "starting ImageJ")
        if not reply.get("ok"):
            error = reply.get("error", "")
            self._kill()
            if "JVMNotFound" in error or "No JVM" in error:
                raise ImageJUnavailable(f"no Java runtime found ({error}): install 'default-jre-headless' "
                                        "or set JAVA_HOME")
            raise ImageJError(f"ImageJ did not start: {error}")
        self.version = reply.get("version")
        self._display = reply.get("display")
        self.startup_seconds = time.perf_counter() - t0
        return self

    def close(self) -> None:
        """Stop the JVM and Xvfb (politely, then by force) and remove the temporary folder."""
        if self.running:
            try:
                self._send({"op": "quit"})
                # the JVM waits for its non-daemon threads, which some macros leave running: the
                # outputs are written by then, so a JVM still there after a few seconds is killed
                self._receive(QUIT_WAIT_S, "stopping ImageJ")
                self._proc.wait(timeout=QUIT_WAIT_S)
            except (ImageJError, OSError, subprocess.TimeoutExpired):
                pass
        self._kill()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _kill(self) -> None:
        """Kill the worker's whole process group (worker, JVM, Xvfb); idempotent."""
        proc = self._proc
        if proc is not None:
            try:  # the group may outlive its leader (Xvfb), so always
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            if self._display is not None:
                _remove_stale_x_lock(self._display)
        self._proc = None
        self._display = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- protocol
    def _send(self, request: dict) -> None:
        self._proc.stdin.write((json.dumps(request) + "\n").encode())
        self._proc.stdin.flush()

    def _receive(self, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                tail = self._stderr_tail()
                self._kill()
                raise ImageJTimeout(f"ImageJ timed out after {timeout:g} s {what}; it was stopped"
                                    + (f" (worker output: {tail})" if tail else ""))
            if select.select([fd], [], [], min(left, 1.0))[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    tail = self._stderr_tail()
                    self._kill()
                    raise ImageJError(f"ImageJ stopped unexpectedly {what}" + (f": {tail}" if tail else ""))
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _stderr_tail(self, n: int = 800) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - n))
            return self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    # -- macros
    def run_macro(self, macro: str | Path, arg: str | dict = "", *, file: str | Path | None = None,
                  timeout: float | None = None) -> str | None:
        """Run a macro file with an argument (a string, or a dict written as key=value lines).

        Returns the macro's return value. A macro error raises `ImageJError` naming the macro
        and `file` (the image being processed); a request past `timeout` raises `ImageJTimeout`.
        """
        path = macro_path(macro)
        if isinstance(arg, dict):
            arg = "\n".join(f"{k}={v}" for k, v in arg.items())
        self.start()
        what = f"running {path.name}" + (f" on {file}" if file else "")
        try:
            self._send({"op": "macro", "macro": str(path), "arg": arg})
        except OSError:
            self._kill()
            raise ImageJError(f"ImageJ stopped unexpectedly {what}") from None
        reply = self._receive(self.timeout if timeout is None else timeout, what)
        if not reply.get("ok"):
            raise ImageJError(f"ImageJ macro {path.name} failed" + (f" on {file}" if file else "")
                              + f": {reply.get('error')}", reply.get("log", ""))
        return reply.get("result")

    # -- our macros
    def semantic_file(self, mask_path: str | Path, out_path: str | Path, style: str = "deepbacs") -> Path:
        """ImageJ opens an instance mask file and saves its 0/1/2 labels (instance_to_semantic.ijm)."""
        mask_path = Path(mask_path)
        with _macro_output(out_path, "instance_to_semantic.ijm", mask_path) as tmp:
            self.run_macro("instance_to_semantic.ijm",
                           {"input": mask_path, "output": tmp, "style": style}, file=mask_path)
        return Path(out_path)

    def instance_to_semantic(self, mask: np.ndarray, style: str = "deepbacs", *, name: str = "mask") -> np.ndarray:
        """The 0/1/2 labels of an instance mask array, computed by our macro in ImageJ.

        Same rule and same result as `rescale4dl_bmz.data.labels.instance_to_semantic`.
        `name` (e.g. the source file) appears in error messages.
        """
        import tifffile

        from rescale4dl_bmz.vocabulary import LABEL_STYLES

        if style not in LABEL_STYLES:
            raise InputError(f"unknown edge style {style!r}; choose one of {', '.join(LABEL_STYLES)}")
        mask = labels_for_imagej(mask, name)
        self.start()
        src, dst = self._tmp / "labels_in.tif", self._tmp / "labels_out.tif"
        tifffile.imwrite(src, mask)
        try:
            out = tifffile.imread(self.semantic_file(src, dst, style).as_posix())
        except ImageJError as exc:
            raise type(exc)(str(exc).replace(str(src), str(name)), exc.log) from None
        finally:
            for p in (src, dst):
                p.unlink(missing_ok=True)
        if out.shape != mask.shape or out.dtype != np.uint8:
            raise ImageJError(f"ImageJ returned a {out.dtype} {out.shape} image for {name}, expected uint8 {mask.shape}")
        return out

    def resample_file(self, image_path: str | Path, out_path: str | Path, target_um: float,
                      source_um: float | None = None) -> Path:
        """ImageJ brings an image to `target_um` µm/pixel (resample_to_model_pixel_size.ijm).

        Bins (average) for an integer ratio >= 2, else scales bicubically; sets the calibration.
        `source_um` overrides the file's own pixel size.
        """
        image_path, out_path = Path(image_path), Path(out_path)
        if not target_um > 0:
            raise InputError(f"target pixel size must be positive, got {target_um}")
        if source_um is not None and not source_um > 0:
            raise InputError(f"source pixel size must be positive, got {source_um}")
        with _macro_output(out_path, "resample_to_model_pixel_size.ijm", image_path) as tmp:
            arg = {"input": image_path, "output": tmp, "target": repr(float(target_um))}
            if source_um is not None:
                arg["pixel"] = repr(float(source_um))
            self.run_macro("resample_to_model_pixel_size.ijm", arg, file=image_path)
        return out_path


@contextlib.contextmanager
def _macro_output(out_path: str | Path, macro: str, source: Path) -> Iterator[Path]:
    """`atomic_path` for a file a macro writes: a .tif name (ImageJ insists on it), no placeholder
    file, and an `ImageJError` when the macro wrote nothing."""
    with atomic_path(out_path, suffix=".part.tif") as tmp:
        tmp.unlink()
        yield tmp
        if not tmp.is_file():
            raise ImageJError(f"ImageJ macro {macro} wrote no output for {source}")


def labels_for_imagej(mask: np.ndarray, name: str) -> np.ndarray:
    """A label array ImageJ reads exactly: uint8/uint16, or float32 for labels up to 2^24."""
    mask = check_labels(mask, name)
    top = mask.max() if mask.size else 0
    if top > MAX_EXACT_LABEL:
        raise InputError(f"{name}: label {top} is above 2^24, which ImageJ's 32-bit float images cannot hold "
                         "exactly; use the python engine")
    if mask.dtype in (np.uint8, np.uint16):
        return mask
    if top <= np.iinfo(np.uint16).max:
        return compact_labels(mask)
    return mask.astype(np.float32)


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, killed but not yet reaped by init, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _remove_stale_x_lock(display: int) -> None:
    """Remove our display's X lock file and socket when its Xvfb was killed (it leaves them)."""
    lock = Path(f"/tmp/.X{display}-lock")
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        pid = None
    deadline = time.monotonic() + 3.0
    while pid is not None and _alive(pid):  # SIGKILL lands asynchronously
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    for path in (lock, Path(f"/tmp/.X11-unix/X{display}")):
        try:
            path.unlink()
        except OSError:
            pass
