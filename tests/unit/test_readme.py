"""The README is a front door that stays true: short, every link and page it names exists, every command it
names is one, its policy example loads and apprise understands its URLs; the docs speak of the software as it is."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

from oomguard.alerting.outbox import unusable_urls
from oomguard.cli import build_parser
from oomguard.config import defaults, from_mapping

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    return {re.sub(r"[^\w\- ]", "", h.strip("# ").lower()).replace(" ", "-")
            for h in page.read_text().splitlines() if h.startswith("#")}


def test_the_readme_is_a_front_door_not_an_encyclopedia():
    assert len(README.read_text().splitlines()) <= 250
    assert README.read_text().startswith("# oomguard\n\n```\nmake run ")


def test_every_link_between_the_pages_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(re.sub(r"`[^`]*`", "", page.read_text())):  # not inside code spans
            if target.startswith(("http://", "https://", "file://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path) if path else page
            if not resolved.exists() or (anchor and anchor not in anchors(resolved)):
                broken.append(f"{page.name}: {target}")
    assert broken == []
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(README.read_text())}
    assert {p.name for p in PAGES[1:]} <= linked  # every docs page is reachable from the front door


def test_every_command_and_make_target_the_readme_names_exists():
    text = README.read_text()
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    named = set(re.findall(r"`oomguard ([a-z-]+)", text)) | set(re.findall(r"sudo oomguard ([a-z-]+)", text))
    assert named and named <= commands, named - commands
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    made = set(re.findall(r"\bmake ([a-z]+)\b", text))
    assert made and made <= targets, made - targets


def test_the_readme_policy_example_loads_and_apprise_understands_its_urls():
    block = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    config = from_mapping(tomllib.loads(block.group(1)), "README")
    assert len(config.alerts.urls) == 3 and config.alerts.alertmanager
    assert unusable_urls(config.alerts.urls) == []


def test_the_runbook_has_a_section_for_every_kind_the_messages_link():
    sections = anchors(ROOT / "docs" / "runbook.md")
    assert {"pre-oom", "confirmed", "unforeseen", "cleared"} <= sections
    assert defaults().alerts.runbook_url.endswith("/runbook.md")
    assert "docs/runbook.md $(DOCDIR)/runbook.md" in (ROOT / "Makefile").read_text()


def test_docs_and_comments_describe_the_software_as_it_is():
    history = re.compile(r"\b(this|last|earlier|previous) stops?\b|\bstop's\b|\bspent (held-out|range|seeds?)\b",
                         re.I)
    found = [f"{p.relative_to(ROOT)}: {m.group()}" for p in [*PAGES, *(ROOT / "src" / "oomguard").rglob("*.py")]
             for m in history.finditer(p.read_text())]
    assert found == []
