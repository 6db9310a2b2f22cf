"""The package layout draws the pipeline: no stage imports a stage to its right (README, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "src" / "oomguard"
# Left to right, as data flows each tick. Top-level modules (config, units, files, ...) are shared vocabulary.
STAGES = ["bpf", "sampling", "identity", "kills", "detection", "evidence", "alerting", "views", "service"]


def stage_imports(path: Path) -> set[str]:
    """The stages a module imports, from its relative or absolute `oomguard.*` imports."""
    own = path.relative_to(PACKAGE).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = list(own[:-1])[: len(own) - node.level]
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("oomguard."):
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts and parts[0] in STAGES:
                found.add(parts[0])
    return found


def test_no_stage_imports_a_stage_to_its_right():
    backwards = []
    for path in PACKAGE.rglob("*.py"):
        stage = path.relative_to(PACKAGE).parts[0]
        if stage not in STAGES:
            continue
        for imported in stage_imports(path):
            if STAGES.index(imported) > STAGES.index(stage):
                backwards.append(f"{path.relative_to(PACKAGE)} imports {imported}")
    assert backwards == []


def test_the_kernel_stage_knows_nothing_of_policy_containers_or_alerts():
    for path in (PACKAGE / "bpf").glob("*.py"):
        text = path.read_text()
        for word in ("config", "identity", "alerting", "attribution"):
            assert f"from ..{word}" not in text and f"oomguard.{word}" not in text, (path.name, word)
