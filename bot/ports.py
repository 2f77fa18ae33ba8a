"""What the bot needs from the rooms it may not import, as the composition root wires them.

The bot records and reads feedback through ``flywheel.events``; everything else it shows or
asks of the Zendesk connector and the flywheel (writing a reply back, the connector's status,
the model registry, queued model changes, the weekly digest, Help Center drafts, the judge's
review queue) arrives
through these ports, built in ``aitl.app.wiring``. The values they hand over are described
here by shape, so the flywheel's own dataclasses satisfy them without the bot importing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from aitl.core.settings import Settings
from bot.judge_review_views import ReviewPanel
from flywheel.digest.report import Digest


class ReplyWriter(Protocol):
    def request(
        self, *, key: str, ticket_id: int, body: str, draft_id: int | None, public: bool
    ) -> Any: ...


class ConnectorPanel(Protocol):
    def status(self) -> dict[str, Any]:
        """The connector's health for the admin; empty when it is not connected."""
        ...

    def route_problems(self, routes: Sequence[dict[str, str]]) -> list[str]: ...


class NoConnector:
    def status(self) -> dict[str, Any]:
        return {}

    def route_problems(self, routes: Sequence[dict[str, str]]) -> list[str]:
        return []


class ModelControl(Protocol):
    """Retraining, promotion and rollback, queued for the worker (a retriever re-embeds the KB).
    With ``conn`` the job is queued in that transaction; each returns False when the same
    change was already waiting, so nothing new was queued."""

    def retrain(self, by: str, conn: Any = None) -> bool:
        """A cycle now, unless one is already waiting."""
        ...

    def promote(self, kind: str, version: str, by: str, conn: Any = None) -> bool: ...

    def rollback(self, kind: str, version: str, by: str, conn: Any = None) -> bool:
        """Roll back ``version`` if it is still the champion (the one the admin saw)."""
        ...


class PendingChange(Protocol):
    """A retrain, promotion or rollback queued or running."""

    @property
    def kind(self) -> str: ...  # '' for a retrain: it may change every kind
    @property
    def version(self) -> str: ...
    @property
    def change(self) -> str: ...  # 'promote' | 'rollback' | 'retrain'
    @property
    def by(self) -> str: ...  # '' for the scheduled retrain
    @property
    def running(self) -> bool: ...
    @property
    def failed_tries(self) -> int: ...


class ModelChange(Protocol):
    """One promotion or rollback done, as the history lists it."""

    @property
    def kind(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def change(self) -> str: ...  # 'promoted' | 'rolled back'
    @property
    def reason(self) -> str | None: ...
    @property
    def at(self) -> datetime: ...

    def words(self, name: Callable[[str], str] = str) -> str:
        """'promoted, replacing r6' or 'rolled back, r6 live again'; ``name`` dresses a
        version for where it is shown."""
        ...


# promotions and rollbacks queued or running, and the latest ones done (newest first)
ModelChanges = tuple[Sequence[PendingChange], Sequence[ModelChange]]


class Week(Protocol):
    """A digest's week, as the flywheel counts it (UTC, Monday to Monday)."""

    @property
    def start(self) -> datetime: ...


class DigestContent(Protocol):
    """The weekly digest's content: the flywheel reads the week, the bot sends it."""

    def week(self, day: date | None, now: datetime) -> Week:
        """The week containing ``day``, or the last full week before ``now``."""
        ...

    def build(self, settings: Settings, week: Week) -> Digest: ...

    def chart(self, digest: Digest) -> bytes:
        """The PNG that goes with the message."""
        ...


class HelpCenterDrafts(Protocol):
    def draft_article(self, title: str, body_html: str) -> tuple[int, str]:
        """(article id, URL) of a new unpublished draft; HelpCenterUnavailable to retry,
        HelpCenterRefused when retrying will not help."""
        ...


class JudgeReviews(Protocol):
    """App Home's review queue of the virtual judge: a sample of the latest cycle's verdicts
    for a reviewer, and their answers stored."""

    def panel(self, reviewer: str) -> ReviewPanel:
        """The reviewer's queue: verdicts they have not answered, and the judge's agreement."""
        ...

    def verdict(self, run_id: int, event_id: int) -> bool | None:
        """Whether run ``run_id`` kept the event; None when it holds no verdict on it."""
        ...

    def record(
        self, conn: Any, run_id: int, event_id: int, reviewer: str, agrees: bool, at: datetime
    ) -> bool:
        """Store the answer in ``conn``'s transaction, replacing the reviewer's earlier one on
        that event; False (nothing stored) when the run holds no verdict on the event."""
        ...
