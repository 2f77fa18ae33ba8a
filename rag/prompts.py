"""Prompt templates read from plain files in AITL_PROMPTS_DIR."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from rag import exceptions


class PromptLibrary:
    """Loads each template once; a missing file is a clear error naming the folder setting."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def text(self, name: str) -> str:
        return _read(self.folder / name)

    def render(self, name: str, **values: str) -> str:
        template = self.text(name)
        try:
            return template.format(**values)
        except (KeyError, IndexError) as exc:
            raise exceptions.PromptMissing(
                f"{self.folder / name}: placeholder {exc} has no value"
            ) from exc


@cache
def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise exceptions.PromptMissing(
            f"prompt file {path.name} is missing from AITL_PROMPTS_DIR={path.parent}"
        ) from exc
