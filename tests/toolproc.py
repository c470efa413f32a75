"""The ``pynetmap`` tools as processes in tests: :class:`Tool` runs ``python -m netmap_tools
COMMAND ...`` with its output kept in files; :func:`unique_name` names the ports it uses."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid

__all__ = ["BOUND", "READY", "Tool", "unique_name"]

BOUND = 180.0   # s a step may take before it counts as a hang (the lab guest is slow)
READY = "reading from"


class Tool:
    """One ``python -m netmap_tools COMMAND ...`` process; stdout and stderr kept in files."""

    def __init__(self, command: str, *args: str, backend: str) -> None:
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netmap_tools", command, *args, "--backend", backend],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err, env=dict(os.environ))

    def _read(self, f) -> str:
        return os.pread(f.fileno(), 1 << 20, 0).decode(errors="replace")

    @property
    def stdout(self) -> str:
        return self._read(self.out)

    @property
    def stderr(self) -> str:
        return self._read(self.err)

    def wait_ready(self, mark: str = READY) -> None:
        end = time.monotonic() + BOUND
        while mark not in self.stderr:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.stderr}"
            assert time.monotonic() < end, f"not ready after {BOUND} s: {self.stderr}"
            time.sleep(0.02)

    def finish(self) -> int:
        try:
            return self.proc.wait(BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running after {BOUND} s: {self.stderr}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def unique_name(prefix: str) -> str:
    """A pipe or switch name no other test process uses."""
    return f"{prefix}{os.getpid()}x{uuid.uuid4().hex[:6]}"
