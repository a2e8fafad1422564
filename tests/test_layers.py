"""The package's layering (docs/design.md, "The data path"): each module imports only
modules of a lower layer, so the pure core never reaches the edges and nothing imports
the wiring above it. A new module goes into one layer here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reconfigure"

LAYERS: list[set[str]] = [
    # foundations: no project imports beyond each other's lower layers
    {"__init__", "tiers", "files", "commands", "log", "report", "health",
     "users.__init__", "users.accounts", "users.homes", "longpoll"},
    {"settings", "rows", "metrics", "guard"},
    {"aws", "tree", "scanfile", "users.plan", "status"},
    # the edges and the pure renderer
    {"table", "render", "heartbeat", "ssm", "queues", "reload"},
    {"apply", "users.sync"},
    {"cycle"},  # the pipeline
    {"loop"},  # the schedule
    {"app"},  # the wiring
    {"cli"},
    {"entry"},
    {"__main__"},
]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def project_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "reconfigure":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("reconfigure."):
                found.add(node.module.removeprefix("reconfigure."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("reconfigure.") for a in node.names
                      if a.name.startswith("reconfigure.")}
    return {"__init__" if name == "__version__" else name for name in found}


def layer_of() -> dict[str, int]:
    return {name: rank for rank, names in enumerate(LAYERS) for name in names}


def test_every_module_has_a_layer() -> None:
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    assert modules == set(layer_of()), (
        f"not in LAYERS: {sorted(modules - set(layer_of()))}; "
        f"gone: {sorted(set(layer_of()) - modules)}")


def test_no_module_imports_its_own_layer_or_one_above() -> None:
    rank = layer_of()
    upward = sorted(
        f"{module_name(p)} (layer {rank[module_name(p)]}) imports {name} (layer {rank[name]})"
        for p in PACKAGE.rglob("*.py") for name in project_imports(p)
        if name in rank and rank[name] >= rank[module_name(p)])
    assert not upward, upward
