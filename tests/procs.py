"""Helper processes for cross-process tests on either backend: a Python child that runs a
script and reports, line by line, what it saw; the parent waits for each line with a bound
(a bound against hangs, never a measurement of speed).

    with Child(SCRIPT, name, backend) as c:
        c.expect("ready")          # -> the rest of that line, split
        c.tell("go")               # a line to the child's stdin
        ...
        words = c.expect("woke")

The child inherits the environment (so the emulator namespace of the test), runs with
unbuffered output, and is killed if still alive when the block ends.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

__all__ = ["Child", "BOUND"]

#: seconds a step may take before the test calls it a hang (netmap under software emulation
#: starts a Python process with numpy in several seconds)
BOUND = 120.0


class Child:
    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", textwrap.dedent(script), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ))
        self._buf = b""
        self.lines: list[str] = []

    def expect(self, tag: str, bound: float = BOUND) -> list[str]:
        """The words after ``tag`` on the next line the child prints; fails on another line,
        on the child's exit, or after ``bound`` seconds."""
        line = self._line(bound)
        words = line.split()
        assert words and words[0] == tag, f"child said {line!r}, expected {tag!r}; {self._why()}"
        return words[1:]

    def tell(self, line: str) -> None:
        """One line to the child's stdin."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def _line(self, bound: float) -> str:
        end = time.monotonic() + bound
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child silent for {bound} s; {self._why()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError(f"child ended; {self._why()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        text = line.decode()
        self.lines.append(text)
        return text

    def _why(self) -> str:
        rc = self.proc.poll()
        err = b""
        if rc is not None:
            err = self.proc.stderr.read() or b""
        return f"exit code {rc}, lines so far {self.lines}, stderr {err.decode()[-2000:]!r}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(BOUND)

    def wait(self, bound: float = BOUND) -> int:
        return self.proc.wait(bound)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.stderr.close()


def port_pair(kind: str, tag: str, conf: str = "") -> tuple[str, str]:
    """Two port names with fresh parents: the ends ``{1`` (with ``conf``) and ``}1`` of a pipe
    (``kind == "pipe"``), or ports ``a`` and ``b`` of one switch."""
    from netmap_core.testing import unique_switch

    if kind == "pipe":
        pipe = f"netmap:{unique_switch(tag)}"
        return f"{pipe}{{1{conf}", f"{pipe}}}1"
    sw = unique_switch(f"vale{tag}")
    return f"{sw}:a", f"{sw}:b"
