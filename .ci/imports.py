#!/usr/bin/env python3
"""Architecture check of pynetmap's packages, from their source alone (stdlib ``ast``; nothing
is imported or executed).

    python .ci/imports.py [PACKAGE_DIR ...]

Default: netmap_core, backends/netmap_emu, backends/netmap_dev and a tools package
``netmap_tools`` when one exists. For each package it prints the import graph between the
package's own modules (one line per module, "late" = an import inside a function), then every
violation of the rules below as ``file:line: rule: what`` with the reason, and a summary line.
Exit status 1 if any package has a violation, 2 on a usage error.

Rules:

1. ``cycle``: no import cycle between the modules of a package, late imports included (an import
   moved into a function hides a cycle, it does not remove it). Each strongly connected component
   (Tarjan) is reported as cycles ``a -> b -> a``: for every import edge inside it, the shortest
   cycle through that edge.
2. ``private-name``: no module uses another module's private names (``_x``; dunders are fine):
   ``from .m import _x``, ``m._x`` where ``m`` is an imported module, ``getattr(m, "_x")``,
   ``import pkg._m`` from outside ``pkg``. A module's own private names are its own; a private
   submodule ``pkg._m`` belongs to the package ``pkg``, so modules under ``pkg`` may use it.
   Applies to every project package (PROJECT_PACKAGES and the ones checked), not third-party ones.
3. ``layering`` / ``forbidden-import``: the LAYERS and FORBIDDEN_IMPORTS declared below. A rule
   about a subpackage that does not exist (yet) is skipped.
4. ``import-side-effect`` / ``import-guard``: behaviour must not be wired by importing a module.
   Flagged: module-level statements (outside functions) that assign to or mutate (append, update,
   ...) an attribute of an imported module, module-level calls of a function named ``install`` or
   ``register*``, decorators ``@module.register*`` on module-level definitions; and
   ``try: import ... except ImportError`` around an import of a module of the same package (it
   ships with the importer, so the guard can only hide a real error).

Imports under ``if TYPE_CHECKING:`` are shown as "type" edges and checked by rules 2 and 3, but
they never run, so rule 1 ignores them. ``importlib.import_module("a.b")`` with a constant name
counts as an import ("dynamic").
"""
from __future__ import annotations

import ast
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

# --- the rules, as data -------------------------------------------------------------------------

#: packages checked when none is named (paths relative to the repository root); the ones in
#: OPTIONAL_PACKAGES are checked only if they exist
DEFAULT_PACKAGES = ("netmap_core", "backends/netmap_emu", "backends/netmap_dev", "netmap_tools")
OPTIONAL_PACKAGES = {"netmap_tools": ("netmap_tools", "backends/netmap_tools", "tools/netmap_tools")}

#: top-level names of the project's packages: rule 2 applies to imports of these (and of every
#: package being checked), whether or not they are checked in this run
PROJECT_PACKAGES = ("netmap_core", "netmap_emu", "netmap_dev", "netmap_tools")


@dataclass(frozen=True)
class Layer:
    """What the modules of one subpackage may import from the rest of their package: their own
    subpackage always; the subpackages named in ``may``; and, if ``others``, the package's modules
    that belong to no declared layer (e.g. ``netmap_emu/namespace.py``, the package root)."""

    may: tuple[str, ...] = ()
    others: bool = True
    why: str = ""


#: package -> subpackage -> Layer. Only direct imports are checked (not what they import in turn).
LAYERS: dict[str, dict[str, Layer]] = {
    "netmap_emu": {
        "shm": Layer(may=(), others=False,
                     why="shm/ is the bottom layer (shared-memory segments and layout): it imports "
                         "nothing else of netmap_emu"),
        "kernel": Layer(may=("shm",),
                        why="kernel/ (registry, open/close) sits on shm/ and must not know the "
                            "datapath"),
        "datapath": Layer(may=("shm",),
                          why="datapath/ (syncs, forwarding) sits on shm/ and must not reach into "
                              "the kernel's registry"),
    },
}

#: package -> modules it must not import (any of its modules, late imports included) -> why
_NO_IO = "the core does no I/O, process or terminal work (that belongs to backends and tools)"
FORBIDDEN_IMPORTS: dict[str, dict[str, str]] = {
    "netmap_core": {m: _NO_IO for m in ("argparse", "getopt", "multiprocessing", "subprocess",
                                        "curses", "socket", "signal")},
}

#: method names that change the object they are called on (rule 4)
MUTATORS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem",
                      "remove", "discard", "clear", "sort", "reverse", "__setitem__", "__delitem__"})

#: each rule's rationale, printed once per package under its violations
WHY = {
    "cycle": "modules in a cycle cannot be loaded, read or tested one without the other; the "
             "import order decides what works, and a late import only hides the cycle",
    "private-name": "a private name is its module's business: using it elsewhere couples the two "
                    "modules behind the owner's back; make it public (documented) or move it",
    "layering": "a lower layer that imports a higher or a sibling one can no longer be understood, "
                "tested or replaced on its own",
    "forbidden-import": "see the package's FORBIDDEN_IMPORTS entry in .ci/imports.py",
    "import-side-effect": "behaviour wired by an import exists only if, and from when, some module "
                          "happens to be imported; wire it explicitly where it is needed",
    "import-guard": "the module ships with its importer, so the guard cannot fail in a correct "
                    "install: it can only turn a real error (a typo, a broken module) into a "
                    "silent fallback",
    "parse-error": "the file cannot be parsed, so nothing about it can be checked",
}


# --- the model ----------------------------------------------------------------------------------

@dataclass
class Imp:
    """One imported module (an import statement may give several)."""

    line: int
    target: str              # absolute dotted module name (for ``from m import name``: m.name if
                             # that is a module, else m)
    late: bool = False       # inside a function
    typing: bool = False     # under ``if TYPE_CHECKING:``
    dynamic: bool = False    # importlib.import_module("constant")
    func: str = ""           # enclosing function, for late imports
    guarded: bool = False    # inside ``try:`` with an ``except ImportError``


@dataclass
class Violation:
    path: str
    line: int
    rule: str
    what: str
    why: str = ""
    detail: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [f"{self.path}:{self.line}: {self.rule}: {self.what}"]
        out += [f"    {d}" for d in self.detail]
        out.append(f"    why: {self.why}")
        return "\n".join(out)


@dataclass
class Module:
    name: str                # dotted, e.g. netmap_emu.vale_kernel
    path: Path
    is_pkg: bool             # an __init__.py
    tree: ast.Module | None = None
    imports: list[Imp] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)   # local name -> module it is bound to
    violations: list[Violation] = field(default_factory=list)

    @property
    def package(self) -> str:
        """``__package__`` of the module: where its relative imports start."""
        return self.name if self.is_pkg else self.name.rpartition(".")[0]


@dataclass
class Package:
    name: str
    root: Path
    modules: dict[str, Module] = field(default_factory=dict)


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def load_package(root: Path) -> Package:
    """Every module of the package in directory ``root`` (subpackages: directories with an
    ``__init__.py``), parsed but not analysed."""
    pkg = Package(root.name, root)
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames
                             if not n.startswith((".", "__pycache__")) and (d / n / "__init__.py").is_file())
        rel = d.relative_to(root).parts
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            stem = fn[:-3]
            parts = (pkg.name, *rel) if stem == "__init__" else (pkg.name, *rel, stem)
            name = ".".join(parts)
            pkg.modules[name] = Module(name, d / fn, stem == "__init__")
    return pkg


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _within(module: str, owner: str) -> bool:
    return module == owner or module.startswith(owner + ".")


# --- reading one module -------------------------------------------------------------------------

class _Scan(ast.NodeVisitor):
    """Collects a module's imports (with context), its module aliases, and private-name uses."""

    def __init__(self, mod: Module, known: set[str], project: set[str]):
        self.mod, self.known, self.project = mod, known, project
        self.funcs: list[str] = []
        self.typing = False
        self.guard = 0
        self.import_module_names = {"importlib.import_module"}

    # context
    def _visit_func(self, node) -> None:
        for d in getattr(node, "decorator_list", ()):
            self.visit(d)
        self.visit(node.args)
        if getattr(node, "returns", None) is not None:
            self.visit(node.returns)
        self.funcs.append(getattr(node, "name", "<lambda>"))
        body = node.body if isinstance(node.body, list) else [node.body]
        for stmt in body:
            self.visit(stmt)
        self.funcs.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_func

    def visit_If(self, node: ast.If) -> None:
        t = node.test
        if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
                isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"):
            old, self.typing = self.typing, True
            for stmt in node.body:
                self.visit(stmt)
            self.typing = old
            for stmt in node.orelse:
                self.visit(stmt)
        else:
            self.generic_visit(node)

    def visit_Try(self, node) -> None:
        catches = any(_catches_import_error(h) for h in node.handlers)
        self.guard += catches
        for stmt in node.body:
            self.visit(stmt)
        self.guard -= catches
        for part in (node.handlers, node.orelse, node.finalbody):
            for stmt in part:
                self.visit(stmt)

    visit_TryStar = visit_Try

    # imports
    def _add(self, line: int, target: str, **kw) -> None:
        self.mod.imports.append(Imp(line, target, late=bool(self.funcs), typing=self.typing,
                                    func=".".join(self.funcs), guarded=self.guard > 0, **kw))

    def _resolve_from(self, node: ast.ImportFrom) -> str | None:
        if not node.level:
            return node.module
        base = self.mod.package.split(".")
        if node.level - 1 >= len(base):
            return None
        base = base[:len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self._add(node.lineno, a.name)
            self._private_path(node.lineno, a.name)
            if a.asname:
                self.mod.aliases[a.asname] = a.name
            else:
                top = a.name.split(".")[0]
                self.mod.aliases.setdefault(top, top)
            if a.name == "importlib" and a.asname:
                self.import_module_names.add(f"{a.asname}.import_module")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._resolve_from(node)
        if base is None:
            self.mod.violations.append(Violation(
                _display(self.mod.path), node.lineno, "parse-error",
                f"relative import beyond the top of package {self.mod.name.split('.')[0]}",
                why="Python cannot resolve it"))
            return
        if base == "importlib":
            for a in node.names:
                if a.name == "import_module":
                    self.import_module_names.add(a.asname or a.name)
        self._private_path(node.lineno, base)
        for a in node.names:
            if a.name == "*":
                self._add(node.lineno, base)
                continue
            sub = f"{base}.{a.name}"
            if sub in self.known:
                self._add(node.lineno, sub)
                if _is_private(a.name) and self._is_project(base) and not _within(self.mod.name, base):
                    self._private(node.lineno, f"imports {sub}",
                                  f"{a.name} is a private module of {base}, used from outside it")
                self.mod.aliases[a.asname or a.name] = sub
            else:
                self._add(node.lineno, base)
                if _is_private(a.name) and self._is_project(base) and base != self.mod.name:
                    self._private(node.lineno, f"imports {a.name} from {base}",
                                  f"{a.name} is a private name of {base}")

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        if (name in self.import_module_names or name == "__import__") and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) and \
                not node.args[0].value.startswith("."):
            self._add(node.lineno, node.args[0].value, dynamic=True)
            self._private_path(node.lineno, node.args[0].value)
        if name in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2 and \
                isinstance(node.args[0], ast.Name) and isinstance(node.args[1], ast.Constant) and \
                isinstance(node.args[1].value, str):
            owner = self.mod.aliases.get(node.args[0].id)
            if owner is not None:
                self._private_attr(node.lineno, owner, [node.args[1].value], f"{name}(")
        self.generic_visit(node)

    # private names
    def _is_project(self, module: str) -> bool:
        return module.split(".")[0] in self.project

    def _private(self, line: int, what: str, why: str) -> None:
        self.mod.violations.append(Violation(_display(self.mod.path), line, "private-name",
                                             f"{self.mod.name} {what}", why=why))

    def _private_path(self, line: int, dotted: str) -> None:
        """``import a._b.c`` / ``from a._b import c``: ``_b`` belongs to package ``a``."""
        if not self._is_project(dotted):
            return
        parts = dotted.split(".")
        for i, p in enumerate(parts[1:], 1):
            owner = ".".join(parts[:i])
            if _is_private(p) and not _within(self.mod.name, owner):
                self._private(line, f"imports {'.'.join(parts[:i + 1])}",
                              f"{p} is a private module of {owner}, used from outside it")
                return

    def _private_attr(self, line: int, module: str, attrs: list[str], how: str) -> None:
        if not self._is_project(module):
            return
        cur = module
        for a in attrs:
            sub = f"{cur}.{a}"
            if sub in self.known:
                if _is_private(a) and not _within(self.mod.name, cur):
                    self._private(line, f"uses {sub}",
                                  f"{a} is a private module of {cur}, used from outside it")
                    return
                cur = sub
                continue
            if _is_private(a) and cur != self.mod.name:
                shown = f"{how}{cur}, {a!r})" if how else f"{cur}.{a}"
                self._private(line, f"uses {shown}", f"{a} is a private name of {cur}")
            return

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = []
        cur: ast.AST = node
        while isinstance(cur, ast.Attribute):
            chain.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name) and cur.id in self.mod.aliases:
            self._private_attr(node.lineno, self.mod.aliases[cur.id], chain[::-1], "")
            return   # the inner attributes are part of this chain
        self.generic_visit(node)


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _catches_import_error(h: ast.ExceptHandler) -> bool:
    types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
    return any(t is not None and _dotted(t).rpartition(".")[2] in ("ImportError", "ModuleNotFoundError")
               for t in types)


def _module_level(body: list[ast.stmt]):
    """The statements that run when the module is imported: the top level and the bodies of
    module-level compound statements and classes, not function bodies."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for fld in ("body", "orelse", "finalbody"):
            yield from _module_level(getattr(stmt, fld, None) or [])
        for h in getattr(stmt, "handlers", None) or []:
            yield from _module_level(h.body)
        for c in getattr(stmt, "cases", None) or []:
            yield from _module_level(c.body)


def _own_exprs(stmt: ast.stmt):
    """Expression nodes a statement evaluates itself (not those of nested statements or of
    function bodies/lambdas)."""
    todo = [v for f, v in ast.iter_fields(stmt) if f not in ("body", "orelse", "finalbody", "handlers",
                                                             "cases", "decorator_list", "args",
                                                             "returns")]
    while todo:
        v = todo.pop()
        if isinstance(v, list):
            todo.extend(v)
        elif isinstance(v, ast.Lambda):
            continue
        elif isinstance(v, ast.AST) and not isinstance(v, ast.stmt):
            yield v
            todo.extend(ast.iter_child_nodes(v))


def _is_hook_name(name: str) -> bool:
    return name == "install" or name.startswith("register")


def _side_effects(mod: Module, package: str, known: set[str]) -> None:
    """Rule 4, first half: module-level statements that wire behaviour into other modules, and
    module-level imports of the package's own modules made only for such effects."""
    def root_module(node: ast.AST) -> tuple[str, str] | None:
        """(module, shown) when ``node`` is an attribute/subscript chain on an imported module
        with at least one attribute (``m.X``, ``m.X[k]``, ``m.X.Y``), else None."""
        n, has_attr = node, False
        while isinstance(n, (ast.Attribute, ast.Subscript)):
            has_attr |= isinstance(n, ast.Attribute)
            n = n.value
        if isinstance(n, ast.Name) and has_attr and n.id in mod.aliases and \
                mod.aliases[n.id] != mod.name:
            return mod.aliases[n.id], ast.unparse(node)
        return None

    def flag(line: int, what: str, why: str) -> None:
        mod.violations.append(Violation(_display(mod.path), line, "import-side-effect",
                                        f"{mod.name}: {what}", why=why))

    def changes(line: int, how: str, hit: tuple[str, str]) -> None:
        flag(line, f"module-level {how} changes {hit[1]}",
             f"{hit[1]} belongs to {hit[0]}; what it holds then depends on whether and when "
             f"{mod.name} is imported")

    imports = []          # module-level imports of this package's modules: (line, bound name, module)
    for stmt in _module_level(mod.tree.body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for a in stmt.names:
                if isinstance(stmt, ast.Import):
                    bound, target = a.asname or a.name.split(".")[0], a.name
                else:
                    base = mod.aliases.get(a.asname or a.name)
                    bound, target = a.asname or a.name, base or ""
                if a.name != "*" and target in known and _within(target, package) and target != mod.name:
                    imports.append((stmt.lineno, bound, target))
        targets = []
        if isinstance(stmt, ast.Assign):
            targets = stmt.targets
        elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
            targets = [stmt.target]
        elif isinstance(stmt, ast.Delete):
            targets = stmt.targets
        for t in targets:
            for tt in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t]):
                hit = root_module(tt)
                if hit:
                    changes(stmt.lineno, "del" if isinstance(stmt, ast.Delete) else "assignment", hit)
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for d in stmt.decorator_list:
                f = d.func if isinstance(d, ast.Call) else d
                hit = root_module(f) if isinstance(f, ast.Attribute) and _is_hook_name(f.attr) else None
                if hit:
                    flag(d.lineno, f"decorator @{ast.unparse(f)} registers {stmt.name}",
                         f"{stmt.name} is then registered in {hit[0]} only once {mod.name} is imported")
        for e in _own_exprs(stmt):
            if not isinstance(e, ast.Call):
                continue
            f = e.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            hit = root_module(f.value) if isinstance(f, ast.Attribute) and f.attr in MUTATORS else None
            if hit:
                changes(e.lineno, f"{ast.unparse(f)}(...)", hit)
            elif _is_hook_name(name):
                flag(e.lineno, f"module-level call {ast.unparse(f)}(...)",
                     f"a function named {name} wires something up, and here it runs as a side "
                     f"effect of importing {mod.name}")

    # a module of the package imported at module level and never used: imported for its effects
    used = {n.id for n in ast.walk(mod.tree) if isinstance(n, ast.Name)}
    for n in ast.walk(mod.tree):
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                             for t in n.targets):
            used |= {c.value for c in ast.walk(n.value) if isinstance(c, ast.Constant)
                     and isinstance(c.value, str)}
    typing_lines = {i.line for i in mod.imports if i.typing}
    for line, bound, target in imports:
        reexport = mod.is_pkg and not bound.startswith("_")   # a package's re-export
        if line in typing_lines or bound in used or reexport:
            continue
        flag(line, f"imports {target} as {bound} and never uses it",
             f"the name is unused, so the import is there only for what {target} does when "
             f"it is imported (or it is dead)")


# --- the package checks -------------------------------------------------------------------------

def _short(pkg: Package, name: str) -> str:
    return "__init__" if name == pkg.name else name[len(pkg.name) + 1:]


@dataclass
class Result:
    package: Package
    edges: dict[str, dict[str, list[Imp]]]           # module -> imported module -> imports
    cycles: list[Violation]
    violations: list[Violation]
    sccs: list[list[str]]                            # import cycles' components (> 1 module)

    def graph_lines(self) -> list[str]:
        pkg = self.package
        out = []
        for m in sorted(pkg.modules, key=lambda n: _short(pkg, n)):
            parts = []
            for t in sorted(self.edges.get(m, {}), key=lambda n: _short(pkg, n)):
                imps = self.edges[m][t]
                tags = []
                if all(i.typing for i in imps):
                    tags.append("type")
                elif all(i.late or i.typing for i in imps):
                    tags.append("late")
                if all(i.dynamic for i in imps):
                    tags.append("dynamic")
                parts.append(_short(pkg, t) + (f" ({', '.join(tags)})" if tags else ""))
            out.append(f"  {_short(pkg, m)} -> {', '.join(parts) if parts else '(none)'}")
        return out

    def summary(self) -> str:
        n_edges = sum(len(v) for v in self.edges.values())
        late = sum(1 for v in self.edges.values() for imps in v.values()
                   if all(i.late or i.typing for i in imps) and not all(i.typing for i in imps))
        sccs = len(self.sccs)
        return (f"summary {self.package.name}: {len(self.package.modules)} modules, {n_edges} "
                f"import edges ({late} late), {len(self.cycles)} cycles"
                + (f" in {sccs} strongly connected component{'s' if sccs != 1 else ''}" if sccs else "")
                + f", {len(self.violations)} other violations")


def _tarjan(nodes: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(nodes) + 100))
    try:
        for v in nodes:
            if v not in index:
                strong(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def _shortest(succ: dict[str, list[str]], src: str, dst: str, inside: set[str]) -> list[str]:
    prev = {src: src}
    q = deque([src])
    while q:
        v = q.popleft()
        if v == dst:
            path = [v]
            while path[-1] != src:
                path.append(prev[path[-1]])
            return path[::-1]
        for w in succ.get(v, ()):
            if w in inside and w not in prev:
                prev[w] = v
                q.append(w)
    return []


def _cycles(pkg: Package, edges: dict[str, dict[str, list[Imp]]]
            ) -> tuple[list[Violation], list[list[str]]]:
    """The cycles (shortest one through each edge of each strongly connected component) and the
    components of more than one module."""
    succ = {m: sorted(t for t, imps in ts.items() if not all(i.typing for i in imps))
            for m, ts in edges.items()}
    out, sccs = [], []
    for comp in _tarjan(sorted(pkg.modules), succ):
        if len(comp) < 2:
            continue
        inside = set(comp)
        seen = set()
        found = []
        for u in comp:
            for v in succ.get(u, ()):
                if v not in inside:
                    continue
                path = [u] + _shortest(succ, v, u, inside)
                cyc = path[:-1]
                k = cyc.index(min(cyc))
                cyc = tuple(cyc[k:] + cyc[:k])
                if cyc not in seen:
                    seen.add(cyc)
                    found.append(cyc)
        for cyc in sorted(found, key=lambda c: (len(c), c)):
            hops = list(zip(cyc, cyc[1:] + cyc[:1]))
            detail = []
            for a, b in hops:
                imps = [i for i in edges[a][b] if not i.typing]
                first = min(imps, key=lambda i: (i.late, i.line))
                how = f"late, in {first.func}()" if first.late else "module level"
                detail.append(f"{_display(pkg.modules[a].path)}:{first.line}: "
                              f"{_short(pkg, a)} imports {_short(pkg, b)} ({how})")
            a, b = hops[0]
            first = min((i for i in edges[a][b] if not i.typing), key=lambda i: (i.late, i.line))
            late = any(all(i.late for i in edges[x][y] if not i.typing) for x, y in hops)
            why = (f"none of these {len(cyc)} modules can be imported without the others"
                   + ("; the late import only postpones the cycle to the first call" if late else ""))
            out.append(Violation(
                _display(pkg.modules[a].path), first.line, "cycle",
                " -> ".join(_short(pkg, c) for c in cyc + cyc[:1])
                + (" (with a late import)" if late else ""), why=why, detail=detail))
        sccs.append(comp)
    return out, sccs


def _layer_of(pkg: Package, name: str, layers: dict[str, Layer]) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in layers else None


def check_package(pkg: Package, known: set[str], project: set[str]) -> Result:
    for mod in pkg.modules.values():
        try:
            mod.tree = ast.parse(mod.path.read_bytes(), filename=str(mod.path))
        except (SyntaxError, ValueError) as exc:
            mod.violations.append(Violation(_display(mod.path), getattr(exc, "lineno", 0) or 0,
                                            "parse-error", str(exc), why=WHY["parse-error"]))
            continue
        _Scan(mod, known, project).visit(mod.tree)
        _side_effects(mod, pkg.name, known)

    edges: dict[str, dict[str, list[Imp]]] = {}
    violations: list[Violation] = []
    layers = {s: ln for s, ln in LAYERS.get(pkg.name, {}).items() if f"{pkg.name}.{s}" in pkg.modules}
    forbidden = FORBIDDEN_IMPORTS.get(pkg.name, {})
    for name, mod in pkg.modules.items():
        violations += mod.violations
        mine = _layer_of(pkg, name, layers)
        for imp in mod.imports:
            top = imp.target.split(".")[0]
            if top in forbidden:
                violations.append(Violation(
                    _display(mod.path), imp.line, "forbidden-import",
                    f"{name} imports {imp.target}" + (f" (late, in {imp.func}())" if imp.late else ""),
                    why=f"{pkg.name} must not import {top}: {forbidden[top]}"))
            if not _within(imp.target, pkg.name):
                continue
            # the deepest module of this package the import names (``import a.b.c`` -> a.b.c)
            target = imp.target
            while target not in pkg.modules and "." in target:
                target = target.rpartition(".")[0]
            if target not in pkg.modules:
                continue
            if imp.guarded:
                violations.append(Violation(
                    _display(mod.path), imp.line, "import-guard",
                    f"{name} guards its import of {target} with except ImportError",
                    why=f"{target} is in the same package as {name}: the guard cannot fail in a "
                        f"correct install and can only hide a real error"))
            if target != name:
                edges.setdefault(name, {}).setdefault(target, []).append(imp)
            theirs = _layer_of(pkg, target, layers)
            if mine is None or theirs == mine:
                continue
            rule = layers[mine]
            ok = theirs in rule.may if theirs is not None else rule.others
            if not ok:
                allowed = ", ".join(f"{s}/" for s in (mine, *rule.may)) + \
                    (" and modules outside the layers" if rule.others else "")
                violations.append(Violation(
                    _display(mod.path), imp.line, "layering",
                    f"{name} (layer {mine}/) imports {target}"
                    + (f" (layer {theirs}/)" if theirs else " (outside the layers)")
                    + (f", late, in {imp.func}()" if imp.late else ""),
                    why=f"{rule.why}; {mine}/ may import only {allowed}"))
    violations.sort(key=lambda v: (v.path, v.line, v.rule, v.what))
    cycles, sccs = _cycles(pkg, edges)
    return Result(pkg, edges, cycles, violations, sccs)


# --- command line -------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def _default_dirs() -> list[Path]:
    out = []
    for d in DEFAULT_PACKAGES:
        cands = OPTIONAL_PACKAGES.get(d)
        if cands is None:
            out.append(REPO / d)
        else:
            out += [REPO / c for c in cands if (REPO / c / "__init__.py").is_file()][:1]
    return out


def run(dirs: list[Path], out=None, index_project: bool = True) -> int:
    """Check the packages in ``dirs`` and print the report; 0 if clean, 1 if not.

    To tell modules from other names (``from x import y``) it also reads, without checking
    them, the project's default packages (unless ``index_project`` is false)."""
    out = out or sys.stdout
    pkgs = [load_package(d) for d in dirs]
    index = {p.root.resolve(): p for p in pkgs}
    for d in _default_dirs() if index_project else ():
        if d.is_dir() and d.resolve() not in index:
            index[d.resolve()] = load_package(d)
    known = {m for p in index.values() for m in p.modules}
    project = set(PROJECT_PACKAGES) | {p.name for p in pkgs}
    bad = 0
    for pkg in pkgs:
        res = check_package(pkg, known, project)
        print(f"== {pkg.name} ({_display(pkg.root)}): imports between its modules", file=out)
        print("\n".join(res.graph_lines()), file=out)
        problems = res.cycles + res.violations
        if problems:
            print(f"-- {pkg.name}: {len(res.cycles)} cycles, {len(res.violations)} other violations",
                  file=out)
            for comp in res.sccs:
                print("strongly connected component: " + ", ".join(_short(pkg, c) for c in comp),
                      file=out)
            for v in problems:
                print(v.render(), file=out)
            print("rules broken here:", file=out)
            for rule in dict.fromkeys(v.rule for v in problems):
                print(f"  {rule}: {WHY[rule]}", file=out)
        print(res.summary(), file=out)
        print(file=out)
        bad += len(problems)
    print(f"imports.py: {len(pkgs)} packages, {bad} problems: {'FAIL' if bad else 'ok'}", file=out)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    dirs = [Path(a) for a in argv] if argv else _default_dirs()
    for d in dirs:
        if not (d / "__init__.py").is_file():
            print(f"imports.py: {d}: not a package directory (no __init__.py)", file=sys.stderr)
            return 2
    return run(dirs)


if __name__ == "__main__":
    raise SystemExit(main())
