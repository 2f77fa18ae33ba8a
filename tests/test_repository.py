"""The repository stands on its own and keeps the import rules of docs/DESIGN.md.

A user has this repository and nothing beside it, so no file may read or link the workspace
folder it was developed in; and a wrong import between rooms must fail the test command with
the rule it breaks, which ``lint-imports`` (import-linter, contracts in pyproject.toml) does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aitl.core.settings import PROJECT_ROOT

PACKAGES = ("aitl", "rag", "connectors", "bot", "flywheel", "sandboxes")
OUTSIDE = ".." + "/shared"  # spelled in two parts so this file does not match itself
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout
    return [PROJECT_ROOT / name for name in listed.decode().split("\0") if name]


def test_no_file_reads_or_links_outside_the_repository() -> None:
    if not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    offenders = []
    for path in tracked_files():
        if path.is_file() and path.suffix not in {".json", ".png"}:
            text = path.read_text(encoding="utf-8", errors="replace")
            if OUTSIDE in text:
                offenders.append(str(path.relative_to(PROJECT_ROOT)))
    assert offenders == []


def test_the_fixtures_and_data_carry_their_licences_and_sources() -> None:
    assert (PROJECT_ROOT / "tests" / "fixtures" / "SOURCES.md").is_file()
    fixtures = PROJECT_ROOT / "tests" / "fixtures"
    licences = sorted(p.parent.name for p in fixtures.rglob("LICENSE"))
    assert licences == ["bolt-python", "go-zendesk", "python-slack-sdk", "zendesk-go"]
    # Zendesk's documented examples carry no licence: a notice says what they are and whose
    notices = sorted(p.parent.name for p in fixtures.rglob("NOTICE"))
    assert notices == ["developer-docs"]
    folders = {p.name for p in (fixtures / "slack").iterdir()} | {
        p.name for p in (fixtures / "zendesk").iterdir()
    }
    assert folders == set(licences) | set(notices)  # every fixture folder says where it is from
    data = PROJECT_ROOT / "benchmarks" / "data" / "dstc11_track5"
    assert (data / "DATALICENSE").is_file()
    assert (data / "data" / "val" / "labels.json").is_file()


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            PROJECT_ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "static", "migrations"),
        )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_its_import_rules(source_copy: Path) -> None:
    result = lint_imports(source_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "rule", "named"),
    [
        (
            "bot/threads.py",
            "from flywheel import store",
            "The bot enters the flywheel only through flywheel.events",
            "bot.threads -> flywheel.store",
        ),
        (
            "connectors/tickets.py",
            "from bot import store",
            "Rooms import only downwards",
            "connectors.tickets -> bot.store",
        ),
        (
            "aitl/core/db.py",
            "from rag import store",
            "Rooms import only downwards",
            "aitl.core.db -> rag.store",
        ),
        (
            "connectors/tickets.py",
            "from flywheel import registry",
            "The Zendesk connector does not import the flywheel",
            "connectors.tickets -> flywheel.registry",
        ),
    ],
)
def test_a_wrong_import_fails_with_the_rule_it_breaks(
    source_copy: Path, module: str, line: str, rule: str, named: str
) -> None:
    path = source_copy / module
    path.write_text(path.read_text() + f"\n{line}  # noqa: F401, E402\n")
    result = lint_imports(source_copy)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert rule in broken and named in broken
