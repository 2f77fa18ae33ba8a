"""Sending the weekly digest to managers and the digest channel, and drafting Help Center
articles from its knowledge gaps.

A week's report is built once and stored; each recipient has one delivery row, and the chart's
file id and the message's ts are stored the moment Slack returns them, so a retried job goes
on where it stopped and nobody gets a week's digest twice. The message carries a key, so a
retry also finds a digest that Slack posted before it failed (a 500, a lost answer). A
recipient who cannot be reached for good (left the workspace, the bot not in the channel) is
skipped with the reason; Slack being down makes the job fail and retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from bot import slack_api
from bot.digest import store as digest_store
from bot.digest.views import digest_blocks, digest_text, report_modal
from bot.exceptions import (
    DigestError,
    HelpCenterRefused,
    SlackRefused,
    SlackUnavailable,
)
from bot.ports import HelpCenterDrafts, Week
from flywheel.digest.report import Digest

if TYPE_CHECKING:
    from bot.services import BotServices

log = logging.getLogger(__name__)
# Slack's answers meaning this recipient cannot get a DM or post, whatever we retry
UNREACHABLE = frozenset(
    {
        "user_not_found",
        "user_disabled",
        "account_inactive",
        "cannot_dm_bot",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
    }
)


@dataclass
class SendReport:
    week_start: date
    sent: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    already: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class DigestService:
    def __init__(self, services: BotServices) -> None:
        self.services = services

    @property
    def db(self):
        return self.services.db

    # --- the report ------------------------------------------------------------------------

    def window(self, week: date | None = None, now: datetime | None = None) -> Week:
        """The week containing ``week``, or the last full week before now."""
        return self.services.digest_content.week(week, now or datetime.now(UTC))

    def prepare(self, window: Week) -> tuple[Digest, bytes]:
        """The week's stored report, built and stored on first use."""
        week = window.start.date()
        with self.db.connection() as conn:
            found = digest_store.report(conn, week)
        if found is None:
            digest = self.build(window)
            chart = self.services.digest_content.chart(digest)
            with self.db.connection() as conn:
                found = digest_store.save_report(conn, week, digest.to_json(), chart)
        return Digest.from_json(found[0]), found[1]

    def build(self, window: Week) -> Digest:
        return self.services.digest_content.build(self.services.config(), window)

    def stored(self, week_start: date) -> Digest | None:
        with self.db.connection() as conn:
            found = digest_store.report(conn, week_start)
        return Digest.from_json(found[0]) if found else None

    # --- sending ---------------------------------------------------------------------------

    def recipients(self) -> list[tuple[str, str]]:
        """(Slack id, 'dm' | 'channel'): each manager, then the digest channel if set."""
        settings = self.services.config()
        managers = set(settings.slack_manager_ids)
        if settings.slack_managers_usergroup:
            managers |= self.services.directory.usergroup_members(settings.slack_managers_usergroup)
        found = [(user, "dm") for user in sorted(managers)]
        if settings.slack_digest_channel:
            found.append((settings.slack_digest_channel, "channel"))
        return found

    def send(self, window: Week) -> SendReport:
        """Send the week's digest to everyone who has not had it; SlackUnavailable when some
        could not be reached now (the job retries, and only those get it)."""
        digest, chart = self.prepare(window)
        report = SendReport(window.start.date())
        recipients = self.recipients()
        if not recipients:
            log.warning(
                "digest %s: no managers or digest channel configured (App Home → People)",
                digest.week_start,
            )
        for recipient, kind in recipients:
            try:
                outcome, reason = self._deliver(digest, chart, recipient, kind)
            except (SlackUnavailable, DigestError) as exc:
                report.failed[recipient] = str(exc)
                continue
            if outcome == "sent":
                report.sent.append(recipient)
            elif outcome == "skipped":
                report.skipped[recipient] = reason
            else:
                report.already.append(recipient)
        if report.failed:
            raise SlackUnavailable(
                f"digest {digest.week_start}: {len(report.failed)} recipients not reached yet"
                f" ({'; '.join(f'{r}: {e}' for r, e in report.failed.items())})"
            )
        return report

    def _deliver(self, digest: Digest, chart: bytes, recipient: str, kind: str) -> tuple[str, str]:
        week = date.fromisoformat(digest.week_start)
        with self.db.connection() as conn:
            delivery = digest_store.claim(conn, week, recipient, kind)
        if delivery.status in ("sent", "skipped"):
            return "already", ""
        try:
            return self._continue(digest, chart, delivery)
        except SlackRefused as exc:
            if exc.error not in UNREACHABLE:  # e.g. a missing scope: an admin can fix it
                self._update(delivery.id, last_error=str(exc)[:500])
                raise DigestError(f"Slack refused the digest for {recipient}: {exc}") from exc
            reason = f"cannot reach {recipient}: {exc.error}"
            log.error("digest %s: %s; skipped", digest.week_start, reason)
            self._update(delivery.id, status="skipped", last_error=reason)
            return "skipped", reason
        except SlackUnavailable as exc:
            self._update(delivery.id, last_error=str(exc)[:500])
            log.warning("digest %s to %s: %s; will retry", digest.week_start, recipient, exc)
            raise

    def _continue(
        self, digest: Digest, chart: bytes, delivery: digest_store.Delivery
    ) -> tuple[str, str]:
        client = self.services.client
        channel = delivery.channel
        if channel is None:
            if delivery.kind == "dm":
                gone = self._left_workspace(delivery.recipient)
                if gone:
                    log.error("digest %s: %s; skipped", digest.week_start, gone)
                    self._update(delivery.id, status="skipped", last_error=gone)
                    return "skipped", gone
                opened = slack_api.call(client.conversations_open, users=delivery.recipient)
                channel = str(opened["channel"]["id"])
            else:
                channel = delivery.recipient
            self._update(delivery.id, channel=channel)
        if delivery.file_id is None:
            self._upload_chart(digest, chart, delivery, channel)
        if delivery.message_ts is None:
            posted = slack_api.post_once(
                client,
                f"digest:{digest.week_start}:{delivery.recipient}",
                check_first=delivery.attempts > 1,  # an earlier attempt may have posted it
                channel=channel,
                text=digest_text(digest),
                blocks=[b.to_dict() for b in digest_blocks(digest)],
                unfurl_links=False,
            )
            self._update(delivery.id, message_ts=str(posted["ts"]))
        self._update(delivery.id, status="sent")
        return "sent", ""

    def _upload_chart(self, digest, chart: bytes, delivery, channel: str) -> None:
        """Upload the chart; a permanent refusal is logged and the digest goes without it."""
        try:
            uploaded = slack_api.call(
                self.services.client.files_upload_v2,
                channel=channel,
                file=chart,
                filename=f"aitl-digest-{digest.week_start}.png",
                title=f"AITL weekly digest · {digest.label}",
            )
        except SlackRefused as exc:
            if exc.error in UNREACHABLE:
                raise
            log.error("digest %s: chart not uploaded to %s: %s", digest.week_start, channel, exc)
            self._update(delivery.id, file_id="", last_error=f"chart not uploaded: {exc.error}")
            return
        files = uploaded.get("files") or [uploaded.get("file") or {}]
        self._update(delivery.id, file_id=str(files[0].get("id") or ""))

    def _left_workspace(self, user_id: str) -> str | None:
        try:
            info = slack_api.call(self.services.client.users_info, user=user_id)
        except SlackRefused as exc:
            if exc.error in UNREACHABLE:
                return f"cannot reach {user_id}: {exc.error}"
            raise
        user = info.get("user") or {}
        if user.get("deleted"):
            return f"{user_id} has left the workspace"
        if user.get("is_bot"):
            return f"{user_id} is a bot"
        return None

    def _update(self, delivery_id: int, **fields: Any) -> None:
        with self.db.connection() as conn:
            digest_store.update_delivery(conn, delivery_id, **fields)

    # --- the full report and Help Center drafts -----------------------------------------

    def report_view(self, week_start: date, user_id: str):
        digest = self.stored(week_start)
        if digest is None:
            raise DigestError(f"the digest of the week of {week_start} is no longer stored")
        can_draft = self.services.help_center is not None and self.services.access.is_admin(user_id)
        return report_modal(digest, can_draft=can_draft, drafted=self._drafted(digest))

    def _drafted(self, digest: Digest) -> dict[str, str]:
        """Gap key → what became of its Help Center draft, for the gaps that have one."""
        shown = {}
        with self.db.connection() as conn:
            for gap in digest.gaps:
                draft = digest_store.article_draft(conn, gap.key)
                if draft is not None:
                    shown[gap.key] = _draft_note(draft)
        return shown

    def request_article(
        self, week_start: date, cluster_key: str, by: str, queue_draft: Callable[[Any], object]
    ) -> tuple[bool, str]:
        """Record the request and, the first time, queue the draft in the same transaction
        (``queue_draft`` takes the connection): a retried click queues nothing."""
        digest = self.stored(week_start)
        gap = next((g for g in digest.gaps if g.key == cluster_key), None) if digest else None
        if gap is None:
            raise DigestError("that knowledge gap is not in the stored digest any more")
        with self.db.connection() as conn:
            draft, new = digest_store.request_draft(conn, cluster_key, week_start, gap.title, by)
            if new:
                queue_draft(conn)
        return new, _draft_note(draft)

    def create_article(self, cluster_key: str, by: str) -> digest_store.ArticleDraft:
        """Create the Help Center draft (the worker); tell whoever asked by DM."""
        help_center = self.services.help_center
        with self.db.connection() as conn:
            draft = digest_store.article_draft(conn, cluster_key)
        if draft is None:
            raise DigestError(f"no draft was requested for gap {cluster_key}")
        if draft.status != "created":
            digest = self.stored(draft.week_start)
            gap = next((g for g in digest.gaps if g.key == cluster_key), None) if digest else None
            if gap is None or help_center is None:
                error = "Zendesk is not connected" if gap else "the gap is no longer stored"
                with self.db.connection() as conn:
                    digest_store.finish_draft(conn, cluster_key, error=error)
            else:
                self._create(help_center, cluster_key, gap)
            with self.db.connection() as conn:
                draft = digest_store.article_draft(conn, cluster_key)
        self._tell(by, _draft_note(draft))
        return draft

    def _create(self, help_center: HelpCenterDrafts, cluster_key: str, gap) -> None:
        try:
            article_id, url = help_center.draft_article(gap.title, gap.body)
        except HelpCenterRefused as exc:
            with self.db.connection() as conn:
                digest_store.finish_draft(conn, cluster_key, error=str(exc))
            return
        with self.db.connection() as conn:
            digest_store.finish_draft(conn, cluster_key, article_id=article_id, url=url)

    def _tell(self, user_id: str, text: str) -> None:
        try:
            slack_api.direct_message(self.services.client, user_id, text)
        except SlackRefused as exc:
            log.warning("could not tell %s: %s", user_id, exc)


def _draft_note(draft: digest_store.ArticleDraft) -> str:
    if draft.status == "created":
        return (
            f"Help Center draft created (not published): <{draft.url}|{draft.title}>."
            " Review and publish it in Zendesk Guide."
        )
    if draft.status == "failed":
        return f"Drafting “{draft.title}” failed: {draft.last_error}. Click again to retry."
    return f"Drafting “{draft.title}” in Help Center (asked by <@{draft.requested_by}>)…"
