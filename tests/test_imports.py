"""Import rules over the source (``ast``, nothing imported): no circles, and the core
never imports a feature.

Every import counts: module level, inside functions (lazy) and under
``TYPE_CHECKING``; a circle of type-only imports is still a circle a reader follows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tollway"
FEATURES = ("billing", "dashboard", "embeddings", "firewalls", "limits", "responses", "tools",
            "tracing")
CORE = ("api", "app", "auth", "chunks", "context", "gateway", "pipeline", "plugins", "providers",
        "routing", "storage", "wire")  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The tollway modules ``name`` imports (``from a import b``: ``a.b`` if a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]  # fmt: skip
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


EDGES: dict[str, set[str]] = {
    name: {t for t in _imports(name, path) if not name.startswith(t + ".")}
    for name, path in MODULES.items()
}  # (a module may use its own package's face: the package __init__ above it)
PAIRS = {(source, target) for source, targets in EDGES.items() for target in targets}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(out)


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_the_import_graph_has_no_circles() -> None:
    assert circles(EDGES) == []


def test_circles_are_found() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("layer", CORE)
def test_the_core_never_imports_a_feature(layer: str) -> None:
    wrong = sorted(
        (source, target)
        for source, target in PAIRS
        if _top(source) == layer and _top(target) in FEATURES
    )
    assert wrong == [], f"core module imports a feature: {wrong}"


def test_only_the_assembly_and_the_features_name_a_feature() -> None:
    allowed = {"assembly", "cli", "config", *FEATURES}
    wrong = sorted(
        (source, target)
        for source, target in PAIRS
        if _top(target) in FEATURES and _top(source) not in allowed
    )
    assert wrong == [], f"imports of a feature outside the assembly: {wrong}"
    # the settings aggregate each feature's config section, and nothing more of it
    assert {t for s, t in PAIRS if _top(s) == "config" and _top(t) in FEATURES} <= {
        f"tollway.{feature}.config" for feature in FEATURES
    }


# The dashboard is a view over what billing and tracing store: it may read them (their
# queries, money formatting, ledger writes for credits); nothing may import the dashboard.
VIEWS = {"dashboard": {"billing", "tracing"}}


def test_features_do_not_import_each_other() -> None:
    wrong = sorted(
        (source, target)
        for source, target in PAIRS
        if _top(source) in FEATURES and _top(target) in FEATURES and _top(source) != _top(target)
        and _top(target) not in VIEWS.get(_top(source), set())
    )
    assert wrong == [], f"a feature imports another: {wrong}"
    assert ("tollway.dashboard.pages", "tollway.billing.ledger") in PAIRS  # not vacuous


def test_the_graph_sees_the_imports() -> None:  # the rules above are not vacuous
    assert ("tollway.assembly", "tollway.billing.plugin") in PAIRS
    assert ("tollway.gateway", "tollway.plugins.hooks") in PAIRS
    assert len(PAIRS) > 200


# Layers, bottom up: a module imports only its own layer and lower ones. Features sit above
# the core (they import it), the assembly above everything.
LAYERS: list[tuple[str, ...]] = [
    ("asgi", "bounds", "ids", "errors", "tokens", "chunks", "entrypoints", "providers.registry",
     "providers.catalogue"),
    ("storage", "wire"),
    ("config",),
    ("providers", "calls", "auth", "demo", "cli_models"),
    ("context", "routing"),
    ("pipeline",),
    ("plugins",),
    ("gateway",),
    ("api",),
    ("app",),
    FEATURES,
    ("assembly", "server", "cli", "__main__"),
]


def _layer(module: str) -> int:
    parts = module.split(".")[1:]
    for depth in (2, 1):
        key = ".".join(parts[:depth])
        for level, names in enumerate(LAYERS):
            if key in names:
                return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


KNOWN_UP: set[tuple[str, str]] = set()  # exceptions, each with its reason (none today)


def test_no_import_runs_up_a_layer() -> None:
    up = sorted(
        (source, target)
        for source, target in PAIRS
        if _layer(target) > _layer(source)
        # the settings aggregate each feature's (and routing's) config section
        and not (_top(source) == "config" and target.endswith(".config"))
        and (source, target) not in KNOWN_UP
    )
    assert up == [], f"imports from a lower layer to a higher one: {up}"
    assert KNOWN_UP <= PAIRS  # an exception that is gone leaves this list
