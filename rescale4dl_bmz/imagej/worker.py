"""The process that hosts ImageJ's JVM for `rescale4dl_bmz.imagej.bridge` (run as a script, not imported).

Why a separate process: a JVM started in-process cannot be stopped and restarted, and a
hung ImageJ call (a dialog nobody closes under Xvfb) cannot be interrupted. This worker runs in
its own process group; the parent enforces a timeout on every request and kills the group
(worker, JVM, Xvfb) when one expires.

Two ways to start ImageJ:
- `--ij-jar JAR`: plain ImageJ 1.x through JPype, inside a private Xvfb display (a free display
  number, `-nolisten tcp`, a random MIT cookie in a private Xauthority file). DISPLAY is set in
  this process only, which hosts nothing but the JVM. Truly headless ImageJ 1.x silently skips
  or hangs on commands with options, hence Xvfb.
- `--fiji DIR`: a Fiji installation through pyimagej (`imagej.init(DIR, mode="headless")`),
  whose legacy layer makes ImageJ 1.x commands work headless; no Xvfb.

Protocol: one JSON object per line. Requests on stdin: {"op": "macro", "macro": path,
"arg": text} or {"op": "quit"}. Replies on the original stdout (fd 1 is redirected to stderr so
nothing the JVM or Xvfb print can corrupt them): {"ok": true, "result": ..., "log": ...} or
{"ok": false, "error": ..., "log": ...}. The first reply announces readiness.
Macros run with the interpreter's errors ignored (no dialog) and any error reported back;
System.out/err (where ImageJ prints IJ.log and IJ.error without a GUI) is captured per request.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from rescale4dl_bmz.process.settings import die_with_parent

XVFB_START_TIMEOUT = 20.0
_KEEP_OPEN: list[int] = []


def _read_line(fd: int, timeout: float) -> str:
    """Bytes from fd up to a newline, EOF or the timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def start_xvfb(workdir: str) -> tuple[subprocess.Popen, int, str]:
    """A private Xvfb: (process, display number, Xauthority path). Retries on taken displays."""
    auth = os.path.join(workdir, "Xauthority")
    cookie = secrets.token_hex(16)
    log = open(os.path.join(workdir, "xvfb.log"), "ab")
    last = "no free display number found"
    for _ in range(30):
        n = random.randint(100, 29999)
        if os.path.exists(f"/tmp/.X{n}-lock") or os.path.exists(f"/tmp/.X11-unix/X{n}"):
            continue
        subprocess.run(["xauth", "-q", "-f", auth, "add", f":{n}", "MIT-MAGIC-COOKIE-1", cookie],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                       timeout=10)
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            ["Xvfb", f":{n}", "-nolisten", "tcp", "-auth", auth, "-screen", "0", "1024x768x24",
             "-displayfd", str(write_fd)],
            pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            preexec_fn=die_with_parent)
        os.close(write_fd)
        text = _read_line(read_fd, XVFB_START_TIMEOUT)
        # Keep the read end open: Xvfb may write the newline separately and dies on EPIPE.
        _KEEP_OPEN.append(read_fd)
        if text.isdigit() and proc.poll() is None:
            return proc, int(text), auth
        proc.kill()
        proc.wait()
        last = f"Xvfb :{n} did not start (exit code {proc.returncode})"
    raise RuntimeError(last)


class Session:
    """The JVM, ImageJ 1.x's macro interpreter and captured Java output."""

    def __init__(self, ij_jar: str | None, fiji: str | None, workdir: str):
        self.xvfb = None
        self.display = None
        self.workdir = workdir
        if fiji:
            import imagej  # pyimagej

            self.ij2 = imagej.init(fiji, mode="headless")
            from scyjava import jimport
        else:
            self.xvfb, self.display, auth = start_xvfb(workdir)
            os.environ["DISPLAY"] = f":{self.display}"
            os.environ["XAUTHORITY"] = auth
            import jpype

            jpype.startJVM(jpype.getDefaultJVMPath(), "-Djava.awt.headless=false",
                           classpath=[ij_jar], convertStrings=True)

            def jimport(name):
                return jpype.JClass(name)
        self.Interpreter = jimport("ij.macro.Interpreter")
        self.IJ = jimport("ij.IJ")
        system = jimport("java.lang.System")
        stream = jimport("java.io.ByteArrayOutputStream")
        printer = jimport("java.io.PrintStream")
        self.buffer = stream()
        system.setOut(printer(self.buffer, True))
        system.setErr(printer(self.buffer, True))
        self.version = str(self.IJ.getFullVersion()) if hasattr(self.IJ, "getFullVersion") else str(self.IJ.getVersion())
        self.dialogs: list[str] = []
        self._closer = None
        if not fiji:
            self._closer = _dialog_closer(self.dialogs)

    def run_macro(self, path: str, arg: str) -> dict:
        with open(path, encoding="utf-8") as fh:
            code = fh.read()
        self.buffer.reset()
        del self.dialogs[:]
        interp = self.Interpreter()
        # Under Xvfb the first error opens a dialog, which the dialog closer records and closes:
        # the macro then stops at that error ("Macro canceled"). Headless Fiji throws instead.
        # (ignoreErrors=true would avoid the dialog but keeps running after an error.)
        interp.setIgnoreErrors(self._closer is None)
        failure = None
        result = None
        try:
            result = interp.run(code, arg)
        except Exception as exc:  # exit("...") and errors abort with "Macro canceled"
            failure = str(exc)
        message = interp.getErrorMessage()
        log = str(self.buffer.toString()).strip()
        self._close_images()
        if self.dialogs:  # an error dialog, or a dialog waiting for a user who is not there
            return {"ok": False, "error": " | ".join(self.dialogs), "log": log}
        if message is not None or failure is not None:
            error = str(message) if message is not None else (log.splitlines()[-1] if log else failure)
            return {"ok": False, "error": error, "log": log}
        return {"ok": True, "result": None if result is None else str(result), "log": log}

    def _close_images(self) -> None:
        interp = self.Interpreter()
        interp.setIgnoreErrors(True)
        try:
            interp.run("while (nImages > 0) { selectImage(nImages); close(); }", "")
        except Exception:
            pass

    def close(self) -> None:
        """Stop the JVM first, then Xvfb (the parent's timeout covers a JVM that will not stop)."""
        try:
            import jpype

            if jpype.isJVMStarted():
                jpype.shutdownJVM()  # must run in the main thread
        finally:
            if self.xvfb is not None and self.xvfb.poll() is None:
                self.xvfb.terminate()
                try:
                    self.xvfb.wait(5)
                except subprocess.TimeoutExpired:
                    self.xvfb.kill()
                    self.xvfb.wait()


def _dialog_closer(sink: list):
    """Close every dialog ImageJ opens (nobody is there to click), recording its text in `sink`."""
    import jpype
    from jpype import JImplements, JOverride

    awt = jpype.JPackage("java.awt")
    window_opened = jpype.JClass("java.awt.event.WindowEvent").WINDOW_OPENED

    text_classes = (awt.Label, awt.TextComponent)

    def texts(component, out):
        """Visible text of labels and text fields, and of ImageJ's MultiLineLabel (via reflection)."""
        if isinstance(component, text_classes):
            out.append(str(component.getText() or ""))
        elif component.getClass().getName() == "ij.gui.MultiLineLabel":
            field = component.getClass().getDeclaredField("lines")
            field.setAccessible(True)
            lines = field.get(component)
            if lines is not None:
                out.extend(str(line) for line in lines if line is not None)
        if isinstance(component, awt.Container):
            for child in component.getComponents():
                texts(child, out)

    @JImplements("java.awt.event.AWTEventListener")
    class DialogCloser:
        @JOverride
        def eventDispatched(self, event):
            if event.getID() != window_opened:
                return
            window = event.getWindow()
            if not isinstance(window, awt.Dialog):
                return
            parts: list[str] = []
            try:
                texts(window, parts)
            except Exception as exc:  # never let a reflection problem keep the dialog open
                parts.append(f"(dialog text unreadable: {exc})")
            title = str(window.getTitle() or "dialog")
            text = " ".join(" ".join(parts).split())
            sink.append(f"{title}: {text}" if text else title)
            if window.getClass().getName() == "ij.gui.WaitForUserDialog":
                window.close()  # also wakes the macro thread waiting on it
            else:
                window.dispose()

    closer = DialogCloser()
    awt.Toolkit.getDefaultToolkit().addAWTEventListener(closer, jpype.JClass("java.awt.AWTEvent").WINDOW_EVENT_MASK)
    return closer


def _watch_parent(parent: int, on_orphan) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            on_orphan()
            os._exit(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ij-jar")
    parser.add_argument("--fiji")
    parser.add_argument("--workdir", help="private folder for Xauthority and logs (default: a new temporary one)")
    args = parser.parse_args(argv)

    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever else prints to stdout (JVM, Xvfb) goes to stderr

    def reply(obj: dict) -> None:
        replies.write(json.dumps(obj) + "\n")
        replies.flush()

    workdir = args.workdir or tempfile.mkdtemp(prefix="rescale4dl-ijw-")
    session = None

    def cleanup() -> None:
        if session is not None and session.xvfb is not None and session.xvfb.poll() is None:
            session.xvfb.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    threading.Thread(target=_watch_parent, args=(os.getppid(), cleanup), daemon=True).start()
    try:
        session = Session(args.ij_jar, args.fiji, workdir)
    except BaseException as exc:  # report why ImageJ could not start, then leave
        reply({"ok": False, "error": f"{type(exc).__name__}: {exc}", "log": ""})
        cleanup()
        return 1
    reply({"ok": True, "ready": True, "display": session.display, "version": session.version,
           "pid": os.getpid()})
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            if request.get("op") == "quit":
                break
            if request.get("op") == "macro":
                try:
                    reply(session.run_macro(request["macro"], request.get("arg", "")))
                except Exception as exc:
                    reply({"ok": False, "error": f"{type(exc).__name__}: {exc}", "log": ""})
            else:
                reply({"ok": False, "error": f"unknown request {request.get('op')!r}", "log": ""})
    finally:
        session.close()
        cleanup()
    reply({"ok": True, "bye": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
