"""The ``pynetmap`` command: the built-in tools (info, demo, vale-ctl, conformance) and the subcommands that
installed backends register in the ``pynetmap.commands`` entry-point group.

A distribution adds a subcommand in its metadata, e.g. in pyproject.toml::

    [project.entry-points."pynetmap.commands"]
    emu = "netmap_emu.cli:main"

The target is ``main(argv: list[str]) -> int | None``; it gets the arguments after the
subcommand's name and parses them itself. Its one-line help is the ``HELP`` string of the
target's module, else the first line of the target's docstring, else of its module's.

An entry point is imported only when its subcommand runs or ``--help`` is shown. One that
cannot be imported is reported with the entry point, its distribution and the exception; the
other subcommands work as usual. A built-in name cannot be taken over by an entry point.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable

from netmap_core import __version__
from netmap_core.backend import BACKENDS, ENV_BACKEND, default_backend_name, probe

__all__ = ["GROUP", "Registered", "discover", "build_parser", "main"]

#: the entry-point group backends register subcommands in
GROUP = "pynetmap.commands"

#: built-in subcommands that parse their own arguments: name -> (module, one-line help)
DELEGATED = {
    "vale-ctl": ("netmap_tools.valectl", "manage VALE switches (netmap's vale-ctl)"),
    "conformance": ("netmap_tools.conformance", "run netmap's conformance suite against a backend"),
    "pkt-gen": ("netmap_tools.pktgen", "send, receive or ping-pong frames (netmap's pkt-gen)"),
    "bridge": ("netmap_tools.bridge", "forward between two ports both ways (netmap's bridge)"),
    "lb": ("netmap_tools.lb", "hash flows from one port into groups of pipes (netmap's lb)"),
    "capture": ("netmap_tools.capture", "write what a port or monitor receives to pcap/pcapng"),
    "replay": ("netmap_tools.replay", "send a pcap/pcapng file out of a port at its timing or a rate"),
    "top": ("netmap_tools.top", "live per-port and per-ring packet, byte and drop rates"),
}

BUILTIN = ("info", "demo", *DELEGATED)

DESCRIPTION = "netmap's packet rings from Python: its tools, and the subcommands backends add."


def _first_line(text: str | None) -> str:
    for line in (text or "").strip().splitlines():
        return line.strip()
    return ""


class Registered:
    """A subcommand from an entry point of group :data:`GROUP`, imported on first use."""

    def __init__(self, ep: importlib.metadata.EntryPoint) -> None:
        self.ep = ep
        self.name: str = ep.name
        self.error: str | None = None     # why it cannot be used, once a load failed
        self._main: Callable | None = None

    def where(self) -> str:
        """Which entry point this is and where it comes from, for messages."""
        dist = getattr(self.ep, "dist", None)
        origin = ""
        if dist is not None:
            origin = f", distribution {dist.metadata['Name']} {dist.version}"
        return f"entry point '{self.ep.name} = {self.ep.value}' (group {GROUP}{origin})"

    def load(self) -> Callable | None:
        """The subcommand's ``main``, or None with :attr:`error` set."""
        if self._main is None and self.error is None:
            try:
                target = self.ep.load()
            except Exception as exc:  # noqa: BLE001 - any failure of foreign code is reported
                self.error = f"{type(exc).__name__}: {exc}"
            else:
                if callable(target):
                    self._main = target
                else:
                    self.error = f"{self.ep.value} is a {type(target).__name__}, not main(argv)"
        return self._main

    def help(self) -> str:
        main = self.load()
        if main is None:
            return f"UNAVAILABLE: {self.error}"
        module = sys.modules.get(getattr(main, "__module__", None) or "")
        text = getattr(module, "HELP", None) if module is not None else None
        if not isinstance(text, str) or not text.strip():
            text = main.__doc__ or (module.__doc__ if module is not None else None)
        return _first_line(text)

    def failure(self) -> str:
        return f"pynetmap {self.name}: cannot load {self.where()}: {self.error}"


def discover() -> tuple[dict[str, Registered], list[str]]:
    """The registered subcommands by name (not imported yet), and the entry points that were
    set aside (a built-in's name, a name registered twice), one message each."""
    found: dict[str, Registered] = {}
    problems: list[str] = []
    try:
        eps = importlib.metadata.entry_points(group=GROUP)
    except Exception as exc:  # noqa: BLE001 - broken metadata must not take the command down
        return found, [f"cannot read the {GROUP} entry points: {type(exc).__name__}: {exc}"]
    for ep in eps:
        reg = Registered(ep)
        if ep.name in BUILTIN:
            problems.append(f"{reg.where()} ignored: '{ep.name}' is a built-in subcommand")
        elif not ep.name or ep.name.startswith("-"):
            problems.append(f"{reg.where()} ignored: not a usable subcommand name")
        elif ep.name in found:
            if found[ep.name].ep.value != ep.value:
                problems.append(f"{reg.where()} ignored: '{ep.name}' is already "
                                f"{found[ep.name].where()}")
        else:
            found[ep.name] = reg
    return found, problems


def cmd_info(args: argparse.Namespace) -> int:
    print(f"pynetmap {__version__}")
    for name in sorted(BACKENDS):
        ok, why = probe(name)
        print(f"  backend {name:7s} {'usable' if ok else 'unavailable'}: {why}")
    print(f"  default backend: {default_backend_name()} (set {ENV_BACKEND} to override)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.pipe:
        from .demo import run

        return run(count=args.count, batch=args.batch, size=args.size, backend=args.backend,
                   slots=args.slots)
    from .switchdemo import run_switch

    return run_switch(count=args.count, batch=args.batch, size=args.size, backend=args.backend,
                      slots=args.slots)


def _ranged(what: str) -> Callable[[str], int]:
    """An argparse type: an integer within the demo's range for ``what``."""
    from .demo import LIMITS

    lo, hi = LIMITS[what]

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; allowed {lo}..{hi}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed {lo}..{hi}")
        return value

    parse.__name__ = what
    return parse


class _Parser(argparse.ArgumentParser):
    """Imports the registered subcommands only when the help is shown: their one-line help is
    theirs, and a broken one must not trouble a command that does not need it."""

    _registered: tuple[dict[str, Registered], list[str]] | None = None

    def format_help(self) -> str:
        if self._registered is not None:
            return build_parser(*self._registered).format_help()
        return super().format_help()


def build_parser(registered: dict[str, Registered] | None = None,
                 problems: list[str] | None = None, *,
                 lazy: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``registered``/``problems`` as :func:`discover` returns them
    (discovered here when None). ``lazy``: import registered subcommands only for the help."""
    if registered is None:
        registered, problems = discover()
    problems = problems or []
    helps = {name: "" if lazy else registered[name].help() for name in sorted(registered)}
    broken = [reg.failure() for reg in registered.values() if reg.error is not None]
    epilog = f"Backends add subcommands through the {GROUP} entry-point group."
    if broken:
        epilog += "\n\nsubcommands that cannot be loaded:\n" + "\n".join(f"  {b}" for b in broken)
    if problems:
        epilog += "\n\nentry points set aside:\n" + "\n".join(f"  {p}" for p in problems)
    p = _Parser(prog="pynetmap", description=DESCRIPTION, epilog=epilog,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    if lazy:
        p._registered = (registered, problems)
    p.add_argument("--version", action="version", version=f"pynetmap {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=argparse.ArgumentParser)
    s = sub.add_parser("info", help="which backends are usable here, and why not")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("demo", help="pkt-gen, VALE switch, lb and two processes as sinks")
    s.add_argument("--pipe", action="store_true",
                   help="the two-process pipe demo instead (sequence numbers checked per frame)")
    s.add_argument("-n", "--count", type=_ranged("count"), default=1_000_000, help="packets (default 1M)")
    s.add_argument("-b", "--batch", type=_ranged("batch"), default=2048, help="slots per sync (default 2048)")
    s.add_argument("-s", "--slots", type=_ranged("slots"), default=4096,
                   help="pipe ring size, 2..4096 (default 4096)")
    s.add_argument("-l", "--size", type=_ranged("size"), default=60,
                   help="frame length, 24..2048 (default 60)")
    s.add_argument("--backend", default=None, help="emu or netmap (default: as netmap_core.open)")
    s.set_defaults(func=cmd_demo)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    for name, help_text in helps.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def _run_delegated(name: str, argv: list[str]) -> int:
    module, _ = DELEGATED[name]
    return int(importlib.import_module(module).main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return _run_delegated(argv[0], argv[1:])
    registered, problems = discover()
    if argv and argv[0] in registered:
        reg = registered[argv[0]]
        target = reg.load()
        if target is None:
            print(reg.failure(), file=sys.stderr)
            return 2
        return int(target(argv[1:]) or 0)
    parser = build_parser(registered, problems, lazy=True)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
