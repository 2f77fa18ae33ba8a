"""Where the suite's own data lives: third-party fixtures are copied into the repository
(see ``tests/fixtures/SOURCES.md``), so a clone alone runs every test."""

from __future__ import annotations

from pathlib import Path

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"
