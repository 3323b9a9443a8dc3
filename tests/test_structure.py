"""The package's shape, read from its source (no import): no import cycle, no import from a lower layer to a higher
one, and no function over 60 lines without a comment saying why."""
import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "optik"

# The layers of docs/architecture.md ("Layers (lower never imports higher)"), lowest first, as the code has them. A
# module may import its own layer and any layer below. Where this differs from the document, the code showed why:
# - data sits below augment and models (as the document draws it): the model and augmentation code decode and fit
#   images through data/, and data/ needs neither.
# - runs sits between training and report/serve: a Run opens models, generative models and data, and the API
#   modules, report/ and serve/ open runs through it; training never needs one.
# - report and serve sit below the API modules: they render and serve what runs saved, through Run and the
#   layers under it, never through an API function (the document's "report/ web/" row).
# - the `optik` package itself (optik/__init__.py) is the facade a notebook user imports: it re-exports the API
#   modules, so it sits above them, and the API modules import each other directly, never through it.
# - console sits below demo: the printers show results; the demo runs the API and prints through them.
LAYERS = [
    ("core",),
    ("data",),
    ("augment", "models"),
    ("evaluation", "robustness", "generative", "interpret"),
    ("training",),
    ("runs",),
    ("report", "serve"),
    ("api", "generative_api", "interpret_api"),
    ("optik",),  # the facade, optik/__init__.py
    ("console",),
    ("demo",),
    ("commands", "cli", "__main__"),  # commands: the sub-commands' help texts, which only the CLI reads
]
# Violations being fixed elsewhere: each must still be there (remove it here once it is fixed).
KNOWN: set[tuple[str, str]] = set()  # upward imports tolerated while being removed (none left)
MAX_LINES = 60
JUSTIFIED = re.compile(r"#\s*long:")  # e.g. "# long: one flag block per sub-command, read top to bottom"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[tuple[str, int]]:
    """``(module, line)`` of every optik module ``name`` imports, at the top or inside functions;
    ``from optik.x import y`` names ``optik.x.y`` when that is a module, else ``optik.x``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "optik"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.split(".")[0] == "optik":
                found |= {(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base, node.lineno)
                          for a in node.names}
    return {(m, line) for m, line in found if m != name}


def graph() -> dict[str, dict[str, int]]:
    """``{module: {imported module: first line}}`` over the package."""
    known = modules()
    edges = defaultdict(dict)
    for name, path in known.items():
        for target, line in sorted(imports(name, path, known), key=lambda e: e[1]):
            edges[name].setdefault(target, line)
    return edges


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else module
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its package or module to LAYERS in {__file__}")


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(modules()):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


def shortest_cycle(component: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the modules of one strongly connected component, first module repeated last."""
    inside, best = set(component), None
    for start in component:  # breadth first from each module back to itself: the first way back is the shortest
        paths, seen = [[start]], {start}
        while paths and (best is None or len(paths[0]) + 1 < len(best)):
            path = paths.pop(0)
            if start in edges.get(path[-1], {}):
                best = path + [start]
                break
            for w in sorted(set(edges.get(path[-1], {})) & inside - seen):
                seen.add(w)
                paths.append(path + [w])
    return best


def test_no_import_cycle():
    edges = graph()
    found = [shortest_cycle(c, edges) for c in cycles(edges)]
    assert not found, "import cycles (a shortest one in each group of modules that import each other):\n" + "\n".join(
        "  " + " -> ".join(f"{a} (line {edges[a][b]})" for a, b in zip(c, c[1:])) + f" -> {c[-1]}" for c in found)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    edges = graph()
    upward = {(a, b) for a, targets in edges.items() for b in targets if layer(b) > layer(a)}
    new = sorted(upward - KNOWN)
    assert not new, "imports from a lower layer to a higher one (see LAYERS):\n" + "\n".join(
        f"  {a} (layer {LAYERS[layer(a)]}) imports {b} (layer {LAYERS[layer(b)]}), line {edges[a][b]}"
        for a, b in new)
    fixed = KNOWN - upward
    assert not fixed, f"fixed, so remove from KNOWN in {__file__}: {sorted(fixed)}"


def test_nothing_imports_the_cli():
    edges = graph()
    assert {a for a, targets in edges.items() if "optik.cli" in targets} == {"optik.__main__"}


def long_functions() -> list[str]:
    """``path:line name (n lines)`` of every function over MAX_LINES lines without a ``# long: why`` comment on
    the line before it (or its decorators) or in its head (from ``def`` to the first statement after the
    docstring)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = node.end_lineno - node.lineno + 1
            if n <= MAX_LINES:
                continue
            top = min([node.lineno] + [d.lineno for d in node.decorator_list])
            body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
            head = lines[max(top - 2, 0):body[0].lineno - 1]  # the line before, the def, the docstring
            if not any(JUSTIFIED.search(line) for line in head):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_long_function_without_a_reason():
    found = long_functions()
    assert not found, (f"functions over {MAX_LINES} lines: split them, or say why on the line before the def "
                       f"(`# long: ...`):\n  " + "\n  ".join(found))


def test_the_cli_is_thin():
    lines = len((PACKAGE / "cli.py").read_text(encoding="utf-8").splitlines())
    assert lines < 300, f"optik/cli.py has {lines} lines: it parses and dispatches; printing goes to console.py"
