"""The import graph of the first-party packages: no circles, and nothing importing back up the layers.

The graph is read from the source with ``ast`` (nothing is imported). An edge A -> B is any import
in module A that names module B:

* ``import b``, ``from b import x`` (when ``x`` is itself a module, the edge goes to that module),
  relative imports, at **module level and inside functions and methods alike**: an import in a
  function runs as soon as the function does, so it is as much a dependency as one at the top;
* ``importlib.import_module("b")`` and ``__import__("b")`` with a literal name (a computed name
  cannot be read from the source and is not counted);
* **not** imports under ``if TYPE_CHECKING:``: they never run, they only name types for the checker.

Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``; those implicit edges are not
added: each package's ``__init__`` is checked through its own imports.

The layers, lowest first, are in ``LAYERS`` below and in docs/layers.md (a test keeps the two
equal). A module may import its own layer and any layer below it; an import of a higher layer is a
back-arrow. A module's layer is the one of the longest prefix in ``LAYERS`` that names it.

``ALLOWED_BACK_ARROWS`` lists the back-arrows not yet removed, each with why; the test fails on any
new circle or back-arrow, and on an allowed one that no longer exists (so the list only shrinks).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("foundation", "devices", "alerts", "ingest", "simulators", "dashboards", "wanli", "tooling")

# Lowest first. Each entry: (layer, the module prefixes that belong to it).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # What every package may import (the package foundation/): errors, the database glue and migrations, metrics,
    # the change bus between instances, leases, background loops, the disk guard, log helpers, the clock, MQTT.
    ("foundation", ("foundation",)),
    # The MQTT contract, the device kinds, the hierarchy, the registry.
    ("devices", ("devices",)),
    # Rules, incidents, escalation, notification.
    ("alerts", ("alerts",)),
    # Decoding, the batch pipeline (it runs the alert service), telemetry stores, dead letters.
    ("ingest", ("ingest",)),
    # The settings object: it builds the domain's policy values (rate limits, dead-letter bounds,
    # the subscription) and is handed, whole, to the rooms above.
    ("settings", ("wanli.settings",)),
    # Simulated devices, populations, scenarios (played against a service through its API and broker).
    ("simulators", ("simulators",)),
    # The HTTP API and the pages (the testers' simulations use the simulators).
    ("dashboards", ("dashboards",)),
    # The application shell: the runtime (composition root), the CLI and its commands, the service
    # a scenario runs on (wanli.embedded_scenario), the simulator commands (simulators.cli).
    ("shell", ("wanli", "simulators.cli")),
    # Development tooling: benchmarks, fault injection, local test servers.
    ("tooling", ("tooling",)),
)

# A device kind's folder (devices/kinds/<kind>/, docs/layers.md) is a vertical slice through the layers: its
# modules of these names sit in the named layer, the rest of the folder in the devices layer.
KIND_SLICE_PACKAGE = "devices.kinds"
KIND_SLICE_LAYERS = {"rules": "alerts", "simulator": "simulators", "scenario": "simulators"}

# Packages whose modules sit in different layers: the package's name covers its __init__ only, each
# module must be named above (so a new module in it fails test_every_module_has_a_layer until placed).
# None now: wanli/ is the shell (its settings module named on its own, one layer lower).
SPLIT_PACKAGES: tuple[str, ...] = ()

# Back-arrows still in the code: (importer, imported) -> why it is still there.
ALLOWED_BACK_ARROWS: dict[tuple[str, str], str] = {}


def _layer_index() -> dict[str, int]:
    return {prefix: rank for rank, (_name, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def layer_of(module: str, index: Mapping[str, int] | None = None) -> int | None:
    """The rank of the module's layer (0 lowest), by the longest prefix in LAYERS; None if none names it.

    A kind's ``rules`` and ``simulator`` modules (``devices.kinds.<kind>.rules``) are of the layer
    ``KIND_SLICE_LAYERS`` names."""
    index = _layer_index() if index is None else index
    parts = module.split(".")
    slice_parts = KIND_SLICE_PACKAGE.split(".")
    if parts[:len(slice_parts)] == slice_parts and len(parts) > len(slice_parts) + 1 \
            and parts[len(slice_parts) + 1] in KIND_SLICE_LAYERS:
        return [name for name, _ in LAYERS].index(KIND_SLICE_LAYERS[parts[len(slice_parts) + 1]])
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in SPLIT_PACKAGES and prefix != module:
            return None
        if prefix in index:
            return index[prefix]
        # "tooling.bench" names tooling.bench, tooling.bench_all, tooling.bench_spool, ...: a family by its stem.
        stems = [p for p in index if "." in p and parts[:end - 1] == p.split(".")[:-1]
                 and parts[end - 1].startswith(p.split(".")[-1] + "_")]
        if stems:
            return index[max(stems, key=len)]
    return None


def first_party_modules(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of the packages: dotted name -> file (a package by its ``__init__.py``)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every dotted name the module imports; ``from m import x`` gives ``m.x`` (a module, or a name in ``m``)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called in ("import_module", "__import__"):
                names.add(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return names


def kind_slice_edges(root: Path = ROOT) -> set[tuple[str, str]]:
    """The imports the registered kinds' slices make at run time by name (``import_module(s.rules)``):
    ``alerts.rules`` imports every kind's rules module, ``simulators.devices`` every simulator module,
    ``simulators.scenarios`` every kind's scenario modules. Read from the literal ``rules="…"``,
    ``simulator="module:Class"`` and ``scenarios=("…",)`` of each ``devices/kinds/*/__init__.py``."""
    loaders = {"rules": "alerts.rules", "simulator": "simulators.devices", "scenarios": "simulators.scenarios"}
    edges: set[tuple[str, str]] = set()
    for init in sorted((root / "devices" / "kinds").glob("*/__init__.py")):
        for node in ast.walk(ast.parse(init.read_text("utf-8"))):
            if isinstance(node, ast.keyword) and node.arg in loaders:
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                edges.update((loaders[node.arg], v.value.partition(":")[0]) for v in values
                             if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return edges


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (each name resolved to the longest module it names), and the
    kinds' slices' imports by name (``kind_slice_edges``)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        names = imported_names(path.read_text("utf-8"), module, path.name == "__init__.py")
        graph[module] = {target for name in names if (target := resolve(name)) and target != module}
    for loader, loaded in kind_slice_edges():
        if loader in graph and loaded in modules:
            graph[loader].add(loaded)
    return graph


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def back_arrows(graph: Mapping[str, set[str]]) -> set[tuple[str, str]]:
    index = _layer_index()
    return {(a, b) for a, targets in graph.items() for b in targets
            if (layer_of(b, index) or 0) > (layer_of(a, index) or 0)}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(first_party_modules())


def test_the_reader_counts_function_level_and_literal_dynamic_imports_but_not_type_checking_ones() -> None:
    source = (
        "from __future__ import annotations\n"
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "from devices import registry\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from alerts.store import IncidentStore\n"
        "else:\n"
        "    import ingest.spool\n"
        "def later():\n"
        "    from wanli.runtime import WanliService\n"
        "    importlib.import_module('tooling.bench')\n"
        "    __import__('tooling.chaos').chaos\n"
    )
    names = imported_names(source, "dashboards.routes.example", is_package=False)
    assert {"devices.registry", "dashboards.routes.sibling", "ingest.spool", "wanli.runtime.WanliService",
            "tooling.bench", "tooling.chaos"} <= names
    assert not any(name.startswith("alerts") for name in names)


def test_circles_are_found_and_a_chain_is_not_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_the_packages_and_their_function_level_imports(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 150
    assert "alerts.service" in graph["ingest.pipeline"]  # module level
    assert "wanli.runtime" in graph["wanli.cli"]  # inside a function


def test_the_kinds_slices_are_in_the_graph_with_their_layers(graph: dict[str, set[str]]) -> None:
    names = [name for name, _ in LAYERS]
    edges = kind_slice_edges()
    assert ("alerts.rules", "devices.kinds.lift_camera.rules") in edges
    assert ("simulators.devices", "devices.kinds.lift_camera.simulator") in edges
    assert ("simulators.scenarios", "devices.kinds.gas_detector.scenario") in edges
    assert "devices.kinds.lift_camera.rules" in graph["alerts.rules"]
    assert "devices.kinds.gas_detector.scenario" in graph["simulators.scenarios"]
    assert names[layer_of("devices.kinds.gas_detector.scenario") or 0] == "simulators"
    assert names[layer_of("devices.kinds.lift_camera.rules") or 0] == "alerts"
    assert names[layer_of("devices.kinds.lift_camera.simulator") or 0] == "simulators"
    assert names[layer_of("devices.kinds.lift_camera.contract") or 0] == "devices"
    assert names[layer_of("devices.kinds.lift_camera") or 0] == "devices"


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    assert [m for m in graph if layer_of(m) is None] == []


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    found = circles(graph)
    assert found == [], "import circles (break them by moving the shared piece down or injecting it):\n" + "\n".join(
        "  " + " <-> ".join(component) for component in found)


def test_no_new_import_runs_back_up_the_layers(graph: dict[str, set[str]]) -> None:
    names = [name for name, _ in LAYERS]
    found = back_arrows(graph)
    new = sorted(found - ALLOWED_BACK_ARROWS.keys())
    assert new == [], "imports of a higher layer:\n" + "\n".join(
        f"  {a} ({names[layer_of(a) or 0]}) -> {b} ({names[layer_of(b) or 0]})" for a, b in new)
    assert sorted(ALLOWED_BACK_ARROWS.keys() - found) == [], "allowed back-arrows that are gone: drop them from the list"


def test_the_documented_layers_are_the_tested_ones() -> None:
    text = (ROOT / "docs" / "layers.md").read_text("utf-8")
    documented = re.findall(r"^\d+\. \*\*(\w+)\*\*", text, flags=re.MULTILINE)
    assert documented == [name for name, _ in LAYERS]


def test_the_products_wheel_ships_no_tooling_and_the_tooling_joins_the_cli_by_entry_points() -> None:
    import tomllib

    from setuptools import find_packages

    product = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    shipped = find_packages(str(ROOT), include=product["tool"]["setuptools"]["packages"]["find"]["include"])
    assert {"wanli", "foundation", "foundation.migrations", "dashboards.routes"} <= set(shipped)
    assert not [p for p in shipped if p == "tooling" or p.startswith("tooling.")], shipped
    tooling = tomllib.loads((ROOT / "tooling" / "pyproject.toml").read_text("utf-8"))
    commands = tooling["project"]["entry-points"]["wanli.commands"]
    for target in commands.values():
        module, _, function = target.partition(":")
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), target
        assert f"def {function}(" in (ROOT / (module.replace(".", "/") + ".py")).read_text("utf-8"), target
    assert set(commands) == {"bench", "chaos"}
