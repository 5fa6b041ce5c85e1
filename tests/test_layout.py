"""The tree's structure, checked: no import cycles, dependencies in one
direction, every package listed for the wheel.

Paths are not module names here (pyproject's package-dir maps
``edgebed.server`` to ``server/``, ...), so the module names are derived
from that mapping, as an installed wheel would have them.
"""
import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dev environment is 3.11; CI too
    tomllib = pytest.importorskip("tomli")


def _setuptools():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]


def modules():
    """module name -> path, for every module of every listed package."""
    dirs = _setuptools()["package-dir"]
    out = {}
    for package in _setuptools()["packages"]:
        folder = ROOT / dirs[package]
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            out[name] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: pathlib.Path, known) -> set:
    """The edgebed modules ``name`` imports, wherever the import statement
    is (a lazy import inside a function is still a dependency), except
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node)
            for child in node.body for n in ast.walk(child)}
    out = set()
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    out.add(target)
                elif base in known:
                    out.add(base)
    out.discard(name)
    return out


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_package_folder_is_listed_for_the_wheel():
    listed = set(_setuptools()["packages"])
    dirs = {ROOT / d for d in _setuptools()["package-dir"].values()}
    for folder in dirs:
        for init in folder.rglob("__init__.py"):
            package_dir = init.parent
            mapped = [p for p, d in _setuptools()["package-dir"].items() if ROOT / d == package_dir]
            assert mapped and mapped[0] in listed, f"{package_dir} is not listed in pyproject.toml"


def test_no_import_cycle_among_edgebeds_modules(graph):
    """Tarjan's strongly connected components: every one must be a single module."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


# Who may import whom (the design notes' dependency direction).
FORBIDDEN = {
    "edgebed.proto": ("edgebed.models", "edgebed.device", "edgebed.server", "edgebed.benchmarks",
                      "edgebed.testbed", "edgebed.results"),
    "edgebed.models": ("edgebed.device", "edgebed.server", "edgebed.benchmarks", "edgebed.testbed",
                       "edgebed.results"),
    "edgebed.device": ("edgebed.server", "edgebed.benchmarks", "edgebed.testbed",
                       "edgebed.results"),
    "edgebed.server": ("edgebed.benchmarks", "edgebed.testbed"),
    "edgebed.results": ("edgebed.server", "edgebed.benchmarks", "edgebed.testbed"),
    "edgebed.testbed": ("edgebed.benchmarks",),
}


def test_dependencies_point_one_way(graph):
    wrong = [f"{m} imports {t}" for m, targets in graph.items() for t in targets
             for layer, banned in FORBIDDEN.items()
             if (m == layer or m.startswith(layer + ".")) and t.startswith(banned)]
    assert wrong == []


def test_the_server_uses_only_the_devices_meters_and_probe(graph):
    wrong = [f"{m} imports {t}" for m, targets in graph.items() if m.startswith("edgebed.server")
             for t in targets if t.startswith("edgebed.device")
             and not t.startswith(("edgebed.device.meter", "edgebed.device.probe"))]
    assert wrong == []


def test_contracts_sit_below_both_ends(graph):
    """A contract imports only the contract machinery and the wire layer, so
    both the agent and the server can import it."""
    for name, targets in graph.items():
        if name.startswith("edgebed.proto.contracts"):
            assert all(t.startswith(("edgebed.proto", "edgebed")) and
                       not t.startswith(("edgebed.models", "edgebed.device", "edgebed.server"))
                       for t in targets), (name, targets)
