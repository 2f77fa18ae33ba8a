"""The ids our Block Kit carries and how button values encode what a click is about.

Every button's value starts with the draft set it belongs to: a card can be an ephemeral
message whose ts we never learn, so the value, not the message, says which drafts were shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.exceptions import MalformedPayload

PREFER = "aitl.prefer"  # .A .B .tie .both_bad
ADOPT = "aitl.adopt"  # .as_is.A .as_is.B .edited.A .edited.B .not_used
RELEVANT = "aitl.relevance.relevant"
NOT_RELEVANT = "aitl.relevance.not_relevant"
MISSING = "aitl.missing"
SHOW_FULL = "aitl.show_full"  # .A .B
KB_SEARCH = "aitl.kb_search"

PREFER_PATTERN = re.compile(r"^aitl\.prefer\.(A|B|tie|both_bad)$")
ADOPT_PATTERN = re.compile(r"^aitl\.adopt\.(as_is|edited)\.(A|B)$|^aitl\.adopt\.not_used$")
RELEVANCE_PATTERN = re.compile(r"^aitl\.relevance\.(relevant|not_relevant)$")
SHOW_PATTERN = re.compile(r"^aitl\.show_full\.(A|B)$")
# ASCII digits that fit Postgres' bigint: str.isdigit() also says yes to "²" and "١٢"
ID_PATTERN = re.compile(r"[0-9]{1,18}")

# modals (callback ids) and their blocks
ADOPTION_VIEW = "aitl.adoption"
MISSING_VIEW = "aitl.missing_knowledge"
FULL_DRAFT_VIEW = "aitl.full_draft"
REASON, DETAILS, EDITED, POST = "reason", "details", "edited", "post"
ARTICLE, URL, NOTE = "article", "url", "note"

# App Home (admin)
ADMIN_PEOPLE, ADMIN_ROUTING, ADMIN_SCHEDULE = (
    "aitl.admin.people",
    "aitl.admin.routing",
    ("aitl.admin.schedule"),
)
HOME_REFRESH = "aitl.home.refresh"
AGENTS_GROUP, AGENTS_CHANNEL, MANAGERS, MANAGERS_GROUP, DIGEST_CHANNEL = (
    "agents_group",
    "agents_channel",
    "managers",
    "managers_group",
    "digest_channel",
)
DEFAULT_CHANNEL, ROUTES, RETRAIN_CRON, DIGEST_CRON, ADMIN_NOTES = (
    "default_channel",
    "routes",
    "retrain_cron",
    "digest_cron",
    "admin_notes",
)


@dataclass(frozen=True)
class ButtonValue:
    draft_set_id: int
    extra: str = ""

    def encode(self) -> str:
        return f"{self.draft_set_id}:{self.extra}" if self.extra else str(self.draft_set_id)

    @classmethod
    def decode(cls, value: str | None) -> ButtonValue:
        set_part, _, extra = (value or "").partition(":")
        if not ID_PATTERN.fullmatch(set_part):
            raise MalformedPayload(f"button value {value!r} names no draft set")
        return cls(int(set_part), extra)

    @property
    def chunk_id(self) -> int:
        """The article a relevance button is about; raises MalformedPayload without one."""
        if not ID_PATTERN.fullmatch(self.extra):
            raise MalformedPayload(f"button value names no chunk: {self.extra!r}")
        return int(self.extra)
