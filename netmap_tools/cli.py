"""The ``pynetmap`` command: backend information, a traffic demo, and the tools' subcommands.

Each subcommand is a thin layer over the library; the tools live in their own modules.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from netmap_core import __version__
from netmap_core.backend import BACKENDS, ENV_BACKEND, default_backend_name, probe

#: subcommands whose argument parsing belongs to another module: name -> "module:function"
DELEGATED = {
    "emu": ("netmap_emu.cli:main", "emulator housekeeping: ls, gc"),
    "vale-ctl": ("netmap_tools.valectl:main", "manage VALE switches (netmap's vale-ctl)"),
}


def cmd_info(args: argparse.Namespace) -> int:
    print(f"pynetmap {__version__}")
    for name in sorted(BACKENDS):
        ok, why = probe(name)
        print(f"  backend {name:7s} {'usable' if ok else 'unavailable'}: {why}")
    print(f"  default backend: {default_backend_name()} (set {ENV_BACKEND} to override)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(count=args.count, batch=args.batch, size=args.size, backend=args.backend,
               slots=args.slots)


def _delegate(name: str, argv: list[str]) -> int:
    target, _ = DELEGATED[name]
    mod, func = target.split(":")
    try:
        main = getattr(importlib.import_module(mod), func)
    except (ImportError, AttributeError) as exc:
        print(f"pynetmap {name}: not available in this installation ({exc})", file=sys.stderr)
        return 2
    return int(main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pynetmap", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"pynetmap {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("info", help="which backends are usable here, and why not")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("demo", help="two processes exchange packets through a netmap pipe")
    s.add_argument("-n", "--count", type=int, default=1_000_000, help="packets (default 1M)")
    s.add_argument("-b", "--batch", type=int, default=2048, help="slots per sync (default 2048)")
    s.add_argument("-s", "--slots", type=int, default=4096, help="pipe ring size (default 4096)")
    s.add_argument("-l", "--size", type=int, default=60, help="frame length (default 60)")
    s.add_argument("--backend", default=None, help="emu or netmap (default: as netmap_core.open)")
    s.set_defaults(func=cmd_demo)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
