"""vale-ctl: netmap's switch management tool (options, output and exit codes of vale-ctl(4)),
built only on :class:`netmap_core.control.Control`, so it runs unchanged on every backend.

    python -m netmap_tools.valectl [--backend emu|netmap] [options]

With no option it lists every port of every switch (``NAME bridge_idx B port_idx P``).
Differences from the C tool: listing exits 0 (vale-ctl exits 1 after a successful listing);
``-C`` ring settings are not passed to ``-a``/``-h`` (the Control interface attaches existing
interfaces as they are); polling (``-p``/``-P``) needs a Control with ``vale_polling_enable``
and otherwise fails with EOPNOTSUPP, as the kernel does for virtual ports.

On the emulator ``-a``/``-h valeSW:IFNAME`` of an OS interface starts a supervised pump process
(spec/vale.md); the listing then also reports, on stderr and with exit status 1, every such
attachment whose pump is not running (restarting, failed, or its supervisor killed).
"""
from __future__ import annotations

import errno
import getopt
import os
import re
import sys
from collections.abc import Callable
from typing import TextIO

from netmap_core import abi
from netmap_core.control import Control, vale_ports
from netmap_core.errors import NetmapError

__all__ = ["main", "parse_ring_config", "parse_poll_config", "USAGE"]

USAGE = """Usage:
vale-ctl [arguments]
\t-g interface\tinterface name to get info
\t-d interface\tinterface name to be detached
\t-a interface\tinterface name to be attached
\t-h interface\tinterface name to be attached with the host stack
\t-n interface\tinterface name to be created
\t-r interface\tinterface name to be deleted
\t-l vale-port\tshow bridge and port indices
\t-C string ring/slot setting of an interface creating by -n
\t-p interface start polling. Additional -C x,y,z configures
\t\t x: 0 (REG_ALL_NIC) or 1 (REG_ONE_NIC),
\t\t y: CPU core id for ALL_NIC and core/ring for ONE_NIC
\t\t z: (ONE_NIC only) num of total cores/rings
\t-P interface stop polling
\t-m memid to use when creating a new interface
\t-v increase verbosity
\t--backend NAME\temu or netmap (default: $PYNETMAP_BACKEND, else netmap if usable, else emu)
\t--help\t\tthis text (-h is netmap's option: attach with the host stack)
with no arguments: list all existing vale ports
"""

_SHORT = "d:a:h:g:l:n:r:C:p:P:m:v"
_ACTIONS = {
    abi.NETMAP_REQ_VALE_DELIF: "remove",
    abi.NETMAP_REQ_VALE_NEWIF: "create",
    abi.NETMAP_REQ_VALE_ATTACH: "attach",
    abi.NETMAP_REQ_VALE_DETACH: "detach",
    abi.NETMAP_REQ_VALE_LIST: "list",
    abi.NETMAP_REQ_VALE_POLLING_ENABLE: "enable polling on",
    abi.NETMAP_REQ_VALE_POLLING_DISABLE: "disable polling on",
    abi.NETMAP_REQ_PORT_INFO_GET: "obtain info for",
}


class _Usage(Exception):
    pass


def _atoi(text: str) -> int:
    """C atoi: optional sign and leading digits, 0 when there are none."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def parse_ring_config(conf: str | None, err: TextIO = sys.stderr) -> tuple[int, int, int, int]:
    """``-C txslots[,rxslots[,txrings[,rxrings]]]`` -> (tx_slots, rx_slots, tx_rings, rx_rings);
    a single slot (ring) number sets both directions; extra numbers are ignored."""
    txs = rxs = txr = rxr = 0
    if not conf:
        return txs, rxs, txr, rxr
    for i, tok in enumerate(t for t in conf.split(",") if t):
        v = _atoi(tok)
        if i == 0:
            txs = rxs = v
        elif i == 1:
            rxs = v
        elif i == 2:
            txr = rxr = v
        elif i == 3:
            rxr = v
        else:
            err.write(f"ignored config: {tok}")
    return txs, rxs, txr, rxr


def parse_poll_config(conf: str | None, err: TextIO = sys.stderr) -> tuple[int, int, int] | None:
    """``-C mode,first_cpu[,ncpus]`` -> (mode, first_cpu_id, num_cpus); mode 0 = single CPU,
    anything else multi CPU. None (with a message) when the string is empty or too long."""
    if not conf:
        err.write("invalid null/empty config\n")
        return None
    mode, first, num = 0, 0, 0
    for i, tok in enumerate(t for t in conf.split(",") if t):
        p = _atoi(tok)
        if i == 0:
            mode = abi.NETMAP_POLLING_MODE_MULTI_CPU if p else abi.NETMAP_POLLING_MODE_SINGLE_CPU
        elif i == 1:
            first = p
        elif i == 2 and mode == abi.NETMAP_POLLING_MODE_MULTI_CPU:
            num = p
        else:
            err.write(f"too many numbers in '{conf}'\n")
            return None
    return mode, first, num


def _port_name_of(spec: str) -> str | None:
    """The kernel name in a port spec for ``-m PORT`` (None when it has no known prefix)."""
    if spec.startswith("netmap:"):
        rest = spec[len("netmap:"):]
    elif re.match(r"vale[A-Za-z0-9_]*:", spec):
        rest = spec
    else:
        return None
    cut = re.search(r"[-*^/@]", rest)
    rest = rest[: cut.start()] if cut else rest
    return rest or None


def _mem_id(control: Control, text: str | None, err: TextIO) -> int:
    """``-m``: a number, or a port whose allocator to use (its mem_id via PORT_INFO_GET)."""
    if text is None:
        return 0
    if text[:1].isdigit():
        return _atoi(text)
    name = _port_name_of(text)
    if name is not None:
        try:
            return control.port_info(name).mem_id
        except NetmapError:
            pass
    err.write(f"invalid format in '-m {text}' (missing 'netmap:'?)\n")
    return -1


def _strerror(exc: BaseException) -> str:
    """netmap's vale-ctl wording (``strerror(errno)``), then the cause when there is one."""
    code = getattr(exc, "errno", None)
    if not code:
        return str(exc)
    detail = getattr(exc, "detail", None) or getattr(exc, "strerror", None)
    text = os.strerror(code)
    return f"{text}: {detail}" if detail and detail != text else text


def _attachment_problems(control: Control, err: TextIO) -> int:
    """Interfaces attached through a pump process (the emulator's Control has
    ``attachments()``) whose pump is not running: one line each on ``err``; 1 if any."""
    listing = getattr(control, "attachments", None)
    if listing is None:
        return 0
    bad = [a for a in listing() if a.state != "running" or not a.supervisor_alive()]
    for a in bad:
        err.write(f"vale-ctl: {a.describe()}\n")
    return 1 if bad else 0


def _list_all(control: Control, out: TextIO, err: TextIO) -> int:
    try:
        for e in vale_ports(control):
            out.write(f"{e.name} bridge_idx {e.bridge_idx} port_idx {e.port_idx}\n")
    except NetmapError as exc:
        err.write(f"failed to list all: {_strerror(exc)}\n")
        return 1
    return _attachment_problems(control, err)


def _run(control: Control, req: int, name: str | None, config: str | None,
         mem_id_text: str | None, mode: int, verbose: int, out: TextIO, err: TextIO) -> int:
    if req == abi.NETMAP_REQ_VALE_LIST and name is None:
        return _list_all(control, out, err)
    assert name is not None
    w = out.write
    try:
        if req == abi.NETMAP_REQ_VALE_DELIF:
            control.vale_delif(name)
        elif req == abi.NETMAP_REQ_VALE_NEWIF:
            txs, rxs, txr, rxr = parse_ring_config(config, err)
            mem = _mem_id(control, mem_id_text, err)
            if mem < 0:
                return 1
            r = control.vale_newif(name, tx_rings=txr, rx_rings=rxr, tx_slots=txs, rx_slots=rxs,
                                   mem_id=mem)
            if verbose:
                w(f"tx_slots:   {r.tx_slots}\nrx_slots:   {r.rx_slots}\n"
                  f"tx_rings:   {r.tx_rings}\nrx_ring:    {r.rx_rings}\nmem_id:     {r.mem_id}\n")
        elif req == abi.NETMAP_REQ_VALE_ATTACH:
            mem = _mem_id(control, mem_id_text, err)
            if mem < 0:
                return 1
            idx = control.vale_attach(name, mode=mode, mem_id=mem)
            if verbose:
                w(f"port_index: {idx}\n")
        elif req == abi.NETMAP_REQ_VALE_DETACH:
            idx = control.vale_detach(name)
            if verbose:
                w(f"port_index: {idx}\n")
        elif req == abi.NETMAP_REQ_VALE_LIST:
            e = control.vale_list(name)
            w(f"bridge_idx: {e.bridge_idx}\nport_idx:   {e.port_idx}\n")
        elif req == abi.NETMAP_REQ_PORT_INFO_GET:
            i = control.port_info(name)
            w(f"memsize:    {i.memsize}\ntx_slots:   {i.tx_slots}\nrx_slots:   {i.rx_slots}\n"
              f"tx_rings:   {i.tx_rings}\nrx_rings    {i.rx_rings}\nmem_id:     {i.mem_id}\n")
        else:  # polling
            cfg = parse_poll_config(config, err) or (abi.NETMAP_POLLING_MODE_SINGLE_CPU, 0, 0)
            enable = req == abi.NETMAP_REQ_VALE_POLLING_ENABLE
            fn: Callable | None = getattr(
                control, "vale_polling_enable" if enable else "vale_polling_disable", None)
            if fn is None:
                raise OSError(errno.EOPNOTSUPP, "polling threads need a NIC attached to a switch")
            fn(name, mode=cfg[0], first_cpu_id=cfg[1], num_cpus=cfg[2])
    except (NetmapError, OSError) as exc:
        err.write(f"failed to {_ACTIONS[req]} {name}: {_strerror(exc)}\n")
        return 1
    return 0


def main(argv: list[str] | None = None, *, control: Control | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run vale-ctl with ``argv`` (without the program name); returns the exit code.
    ``control`` overrides the backend's Control (for tests and embedding)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        opts, rest = getopt.getopt(argv, _SHORT, ["backend=", "help"])
        if ("--help", "") in opts:   # -h is netmap's "attach with the host stack"
            out.write(USAGE)
            return 0
        if rest:
            raise _Usage(f"unexpected argument {rest[0]!r}")
        backend = None
        req, name, config, mem, mode, verbose = 0, None, None, None, abi.NR_REG_ALL_NIC, 0
        table = {"-d": abi.NETMAP_REQ_VALE_DETACH, "-a": abi.NETMAP_REQ_VALE_ATTACH,
                 "-h": abi.NETMAP_REQ_VALE_ATTACH, "-n": abi.NETMAP_REQ_VALE_NEWIF,
                 "-r": abi.NETMAP_REQ_VALE_DELIF, "-g": abi.NETMAP_REQ_PORT_INFO_GET,
                 "-l": abi.NETMAP_REQ_VALE_LIST, "-p": abi.NETMAP_REQ_VALE_POLLING_ENABLE,
                 "-P": abi.NETMAP_REQ_VALE_POLLING_DISABLE}
        for opt, val in opts:
            if opt == "--backend":
                backend = val
            elif opt == "-C":
                config = val
            elif opt == "-m":
                mem = val
            elif opt == "-v":
                verbose += 1
            else:
                req, name = table[opt], val
                if opt in ("-a", "-h"):
                    mode = abi.NR_REG_NIC_SW if opt == "-h" else abi.NR_REG_ALL_NIC
                if opt == "-l" and not val.startswith(abi.NM_BDG_NAME):
                    err.write(f"invalid vale port name: '{val}'\n")
                    raise _Usage("")
        if not any(o != "--backend" for o, _ in opts):
            req, name = abi.NETMAP_REQ_VALE_LIST, None
        if not req:
            raise _Usage("no command given")
    except getopt.GetoptError as exc:
        err.write(f"vale-ctl: {exc}\n")
        err.write(USAGE)
        return 1
    except _Usage as exc:
        if str(exc):
            err.write(f"vale-ctl: {exc}\n")
        err.write(USAGE)
        return 1
    own = control is None
    if own:
        try:
            from netmap_core.control import control_for

            control = control_for(backend)
        except NetmapError as exc:
            err.write(f"vale-ctl: {exc}\n")
            return 1
    assert control is not None   # given, or made just above
    try:
        return _run(control, req, name, config, mem, mode, verbose, out, err)
    finally:
        if own:
            control.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
