"""The main demo: a traffic generator, a VALE switch, a load balancer and two sinks, each tool in
its own process, exactly as a user would start them from a shell; rates stream live, then a
clean shutdown (Ctrl-C safe) and a summary of who moved what.

    pkt-gen -f tx -> valeN:gen ==(VALE switch)==> valeN:lb -> lb -> pipes lbN{0,1 -> 2 x pkt-gen rx

Each child's output is relayed line by line with its role's name; nothing here touches a ring.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

__all__ = ["run_switch", "Role"]

#: seconds a child may take to open its port (a slow machine starts Python with numpy slowly)
START_WAIT = 60.0
#: seconds the whole run may take after the generator starts before the demo stops it
RUN_WAIT = 120.0


@dataclass
class Role:
    """One child process: its name, command line, the output line that says it is ready."""

    name: str
    argv: list[str]
    ready_mark: str
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    proc: subprocess.Popen | None = None

    def start(self, env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "netmap_tools", *self.argv]
        print(f"  $ pynetmap {' '.join(self.argv)}", flush=True)
        # its own process group: a Ctrl-C at the terminal reaches the demo, which stops the
        # children in order (generator first) instead of all at once
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
                                     start_new_session=True)
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            print(f"  [{self.name:>5}] {line}", flush=True)
            if self.ready_mark in line:
                self.ready.set()
        self.ready.set()   # ended: nobody waits for it any longer

    def wait_ready(self) -> None:
        if not self.ready.wait(START_WAIT) or not self.alive():
            raise RuntimeError(f"{self.name} did not start: {' / '.join(self.lines[-3:]) or 'no output'}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (the tools stop with their summary), then SIGKILL after ``timeout`` s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def find(self, pattern: str) -> re.Match | None:
        for line in reversed(self.lines):
            if (m := re.search(pattern, line)):
                return m
        return None


def run_switch(count: int = 1_000_000, batch: int = 512, size: int = 60, backend: str | None = None,
               slots: int = 1024) -> int:
    """Run the demo; 0 when every frame the switch let through reached a sink (or was counted
    dropped by lb), 1 otherwise."""
    tag = f"{os.getpid()}"
    sw, pipes = f"vale{tag}", f"lbdemo{tag}"
    conf = f"@conf:slots={slots}"
    be = ["--backend", backend] if backend else []
    env = dict(os.environ)
    if backend is None:
        env.setdefault("PYNETMAP_BACKEND", "emu")
    lb = Role("lb", ["lb", "-i", f"{sw}:lb{conf}", "-p", f"{pipes}:2", "-o", "1", *be], "lb:")
    sinks = [Role(f"sink{k}", ["pkt-gen", "-i", f"netmap:{pipes}}}{k}", "-f", "rx", "-T", "1000",
                               *be], "reading from") for k in (0, 1)]
    gen = Role("gen", ["pkt-gen", "-i", f"{sw}:gen{conf}", "-f", "tx", "-n", str(count), "-l", str(size),
                       "-b", str(batch), "-s", "10.0.0.1:1000-10.0.0.8:1031", "-T", "1000", *be],
               "sending on")
    roles = [lb, *sinks, gen]
    print(f"demo: {count} frames of {size} B through VALE switch {sw} into a load balancer "
          f"and two sinks (256 flows); Ctrl-C stops it cleanly", flush=True)
    t0 = time.monotonic()
    interrupted = False
    try:
        for r in roles:               # consumers first, so that nothing is sent into the void
            r.start(env)
            r.wait_ready()
        end = time.monotonic() + RUN_WAIT
        while gen.alive() and time.monotonic() < end:
            time.sleep(0.1)
        # lb has taken everything once its rate line shows no input; stopped, it waits until
        # the sinks emptied the pipes, and then the sinks are stopped
        seen = len(lb.lines)
        while time.monotonic() < end and lb.alive():
            if any(re.match(r"in 0\.0 Kpps", x) for x in lb.lines[seen:]):
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        interrupted = True
        print("demo: interrupted, stopping the tools", flush=True)
    except RuntimeError as exc:
        print(f"demo: {exc}", flush=True)
        interrupted = True
    finally:
        for r in (gen, lb, *sinks):   # upstream first
            r.stop(60.0 if r is lb else 10.0)
    return _summary(gen, lb, sinks, time.monotonic() - t0, interrupted)


def _summary(gen: Role, lb: Role, sinks: list[Role], seconds: float, interrupted: bool) -> int:
    sent = gen.find(r"Sent (\d+) packets")
    speed = gen.find(r"Speed: (.*?) Bandwidth")
    lbm = lb.find(r"(\d+) packets forwarded.\s+(\d+) packets dropped. Total (\d+)")
    got = [s.find(r"Received (\d+) packets") for s in sinks]
    n_sent = int(sent.group(1)) if sent else 0
    fwd, drop, total = (int(x) for x in lbm.groups()) if lbm else (0, 0, 0)
    per_sink = [int(m.group(1)) if m else 0 for m in got]
    print("\ndemo summary", flush=True)
    print(f"  generator sent     {n_sent:>10}  ({speed.group(1) if speed else '-'})")
    print(f"  switch -> lb       {total:>10}  (the switch drops what a full port cannot take: "
          f"{n_sent - total})")
    print(f"  lb forwarded       {fwd:>10}  dropped {drop} (a pipe was full)")
    for s, n in zip(sinks, per_sink):
        print(f"  {s.name} received   {n:>10}")
    print(f"  total time         {seconds:>10.1f} s", flush=True)
    ok = not interrupted and n_sent > 0 and total > 0 and sum(per_sink) == fwd and all(per_sink)
    print("demo: " + ("OK: every frame lb forwarded reached a sink, flows spread over both"
                      if ok else "incomplete (see the lines above)"), flush=True)
    return 0 if ok else 1
