"""The shape of the house, read from the source (nothing is imported or run): no import circle,
few floors between the packages of rectflow/, few modules at its top, no module over 400
lines, and the CLI reaching the library through its public face. See docs/design.md."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FLOORS, MAX_TOP, MAX_LINES = 8, 10, 400
# what cli/ may import from the library: the face, the option declarations (its flags), the
# error types; and, lazily in cli/errors.py, the helpers that must load without torch
CLI_MAY = {"rectflow", "rectflow.api", "rectflow.options", "rectflow.errors"}
CLI_LAZY = {"rectflow.io", "rectflow.machine.threads"}


def modules() -> dict[str, Path]:
    out = {}
    for f in (ROOT / "rectflow").rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name: str, path: Path, known) -> set[str]:
    """The rectflow modules ``name`` imports (anywhere in the file, lazily too), except the
    package's lazy public face (``rectflow/__init__.py`` -> ``api``)."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module
                                                                  else [])) \
                if node.level else node.module or ""
            for a in node.names:
                full = f"{mod}.{a.name}"
                found.add(full if full in known else mod)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    found = {m for m in found if m in known and m != name}
    return found - ({"rectflow.api"} if name == "rectflow" else set())


def room(name: str, known) -> str:
    """A package below rectflow/ counts as one room; a top module is its own room."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                found.append(sorted(comp))
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_and_few_floors():
    known = modules()
    graph = {m: imports(m, p, known) for m, p in known.items()}
    assert cycles(graph) == []
    rooms: dict[str, set[str]] = defaultdict(set)
    for m, deps in graph.items():
        rooms[room(m, known)].update(room(d, known) for d in deps if room(d, known) != room(m, known))
    assert cycles(rooms) == []
    floor: dict[str, int] = {}

    def height(r: str) -> int:
        if r not in floor:
            floor[r] = 1 + max((height(d) for d in rooms.get(r, ())), default=0)
        return floor[r]
    assert max(height(r) for r in list(rooms)) <= MAX_FLOORS, floor


def test_few_modules_at_the_top_and_none_too_long():
    top = [p.name for p in (ROOT / "rectflow").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= MAX_TOP, top
    long = {str(p.relative_to(ROOT)): n for p in [*(ROOT / "rectflow").rglob("*.py"),
                                                  *(ROOT / "cli").glob("*.py")]
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_cli_reaches_the_library_through_its_face():
    known = set(modules())
    for f in (ROOT / "cli").glob("*.py"):
        used = imports(f"rectflow.cli.{f.stem}", f, known)
        allowed = CLI_MAY | (CLI_LAZY if f.name == "errors.py" else set())
        assert used <= allowed, (f.name, sorted(used - allowed))
