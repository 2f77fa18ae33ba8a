"""The weekly manager digest: its chart, Markdown and Slack blocks; sent by the scheduler's job
to the local Slack API server once per week and recipient; the full report opened by a
manager's signed click; and a knowledge gap drafted into the local Zendesk Help Center."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from aitl.app.cli import app as cli
from aitl.app.web import create_app
from aitl.app.wiring import build_services
from aitl.core.queue import build_app, build_deferrer
from aitl.core.servers import serve_in_thread
from bot.digest import jobs as digest_jobs
from bot.digest.views import (
    DRAFT_ARTICLE,
    MAX_FIELD,
    MAX_MESSAGE_BLOCKS,
    MAX_MODAL_BLOCKS,
    MAX_SECTION,
    OPEN_REPORT,
    REPORT_VIEW,
    digest_blocks,
    report_modal,
)
from bot.exceptions import SlackUnavailable
from bot.home_views import home_view
from flywheel.digest.content import build_digest
from flywheel.digest.metrics import week_of
from flywheel.digest.render import CHART_SIZE, render_chart, render_markdown
from flywheel.digest.report import Digest, Figure, Gap
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import (
    AGENT_ALICE,
    encode_interactivity,
)
from tests.support.flywheel import annotate_samples
from tests.support.sandboxes import connected_settings

MANAGER, GONE, ADMIN = "U0MANAGER", "U0GONE", "U0ADMIN"
DIGEST_CHANNEL = "C0DIGEST"


def figure(key, value, previous, unit="rate", better=True) -> Figure:
    return Figure(key, key.replace("_", " ").capitalize(), unit, value, previous, better)


def sample_digest(*, gaps: int = 3, agents: int = 3, text: str = "refund") -> Digest:
    """A digest as build_digest makes them, with chosen figures."""
    return Digest(
        week_start="2026-11-16",
        label="16–22 Nov 2026",
        generated_at="2026-11-23T08:00:00+00:00",
        figures=[
            figure("drafted_tickets", 120, 100.0, "count"),
            figure("clicks", 480, 500.0, "count"),
            figure("adoption_rate", 0.62, 0.55),
            figure("sent_adoption_rate", 0.58, None),
            figure("win_rate", 0.54, 0.5),
            figure("relevance_precision", 0.71, 0.74),
            figure("missing_rate", 0.2, 0.25, better=False),
            figure("preference_coverage", 0.8, 0.7),
            figure("median_first_click_s", 42.0, 55.0, "seconds", None),
        ],
        weeks=[
            "19–25 Oct 2026",
            "26 Oct–1 Nov 2026",
            "2–8 Nov 2026",
            "9–15 Nov 2026",
            "16–22 Nov 2026",
        ],
        series={
            "adoption_rate": [0.4, 0.5, None, 0.55, 0.62],
            "win_rate": [None, 0.5, 0.52, 0.5, 0.54],
            "relevance_precision": [0.7, 0.72, 0.75, 0.74, 0.71],
        },
        draft_sets=130,
        adoption={"as_is": 30, "edited": 32, "not_used": 38},
        sent_adoption={"as_is": 20, "edited": 9, "not_used": 21},
        preference={"A": 40, "B": 35, "tie": 10, "both_bad": 15},
        coverage={"preference": 0.8, "adoption": 0.77, "relevance": 0.6, "missing_knowledge": 0.2},
        agents=[
            {
                "agent_id": f"U0AGENT{i}",
                "clicks": 100 - i,
                "tickets": 30,
                "previous_clicks": 90.0,
                "flags": ["clicked 'Tie' on 92% of cards"] if i == 0 else [],
            }
            for i in range(agents)
        ],
        retrain={
            "run_id": 7,
            "status": "succeeded",
            "trigger": "schedule",
            "finished_at": "2026-11-16T02:14",
            "lines": ["retriever: promoted (recall@75 0.5358 → 0.6422)"],
            "error": None,
        },
        gaps=[
            Gap(
                key=f"g{i}",
                title=f"How to get a {text} for a cancelled order, case {i} " + "x" * 100,
                tickets=9 - i,
                examples=["I cancelled and want my money back <!channel> " + "y" * 400] * 3,
                articles=[["Refund policy", "https://help.example/refunds"], ["a note", None]],
                body="<p>body</p>",
            )
            for i in range(gaps)
        ],
    )


# --- rendering ----------------------------------------------------------------------------


def test_the_chart_is_a_png_of_the_expected_size(tmp_path):
    for digest in (sample_digest(), sample_digest(gaps=0, agents=0)):
        png = render_chart(digest)
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size == CHART_SIZE
        image.verify()
    (tmp_path / "digest.png").write_bytes(render_chart(sample_digest()))  # to look at


def test_the_blocks_stay_within_slack_limits_and_escape_customer_text():
    big = sample_digest(gaps=8, agents=60)
    blocks = [b.to_dict() for b in digest_blocks(big)]  # slack_sdk validates lengths here
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    fields = next(b["fields"] for b in blocks if b.get("fields"))
    assert len(fields) <= 10 and all(len(f["text"]) <= MAX_FIELD for f in fields)
    assert "62%" in fields[2]["text"] and "▲ 7 pts" in fields[2]["text"]
    button = blocks[-1]["elements"][0]
    assert (button["action_id"], button["value"]) == (OPEN_REPORT, "2026-11-16")
    text = json.dumps(blocks)
    assert "<@U0AGENT0>" in text and "Tie" in text, "fatigue flags name the agent"

    modal = report_modal(big, can_draft=True).to_dict()
    assert modal["callback_id"] == REPORT_VIEW and len(modal["blocks"]) <= MAX_MODAL_BLOCKS
    sections = [b["text"]["text"] for b in modal["blocks"] if b.get("text")]
    assert all(len(s) <= MAX_SECTION for s in sections)
    modal_text = json.dumps(modal)
    assert "<!channel>" not in modal_text and "&lt;!channel&gt;" in modal_text
    drafts = [b["accessory"] for b in modal["blocks"] if b.get("accessory")]
    assert [d["value"] for d in drafts] == [f"2026-11-16:g{i}" for i in range(8)]
    assert {d["action_id"] for d in drafts} == {DRAFT_ARTICLE}
    readonly = report_modal(big, can_draft=False).to_dict()
    assert not any(b.get("accessory") for b in readonly["blocks"])


def test_an_empty_week_still_reads_well():
    empty = sample_digest(gaps=0, agents=0)
    empty = Digest.from_json(
        empty.to_json()
        | {
            "draft_sets": 0,
            "figures": [
                f | {"value": 0 if f["unit"] == "count" else None}
                for f in empty.to_json()["figures"]
            ],
            "retrain": None,
        }
    )
    assert empty.empty
    text = json.dumps([b.to_dict() for b in digest_blocks(empty)])
    assert "No tickets were drafted" in text and "No retraining has run yet" in text
    markdown = render_markdown(empty)
    assert "No missing knowledge" in markdown and "No agent clicked" in markdown


def test_a_new_install_gets_a_readable_empty_digest(db):
    def no_model(texts):
        raise AssertionError("no gaps: nothing to embed")

    window = week_of(datetime.now(UTC))
    with db.connection() as conn:
        digest = build_digest(conn, window, no_model)
    assert digest.empty and digest.gaps == [] and digest.retrain is None
    assert digest.figure("adoption_rate").change() == "no data this week"
    assert Image.open(io.BytesIO(render_chart(digest))).size == CHART_SIZE
    assert "No tickets were drafted" in render_markdown(digest)


def test_markdown_has_every_part_of_the_report():
    markdown = render_markdown(sample_digest())
    for part in ("## Headlines", "## Last retrain", "## Agents", "## Knowledge gaps"):
        assert part in markdown
    assert "| Adoption rate | 62% | ▲ 7 pts vs 4-week avg 55% ✅ |" in markdown
    assert "| Missing rate | 20% | ▼ 5 pts vs 4-week avg 25% ✅ |" in markdown
    assert "[Refund policy](https://help.example/refunds)" in markdown
    assert "![weekly trends and knowledge gaps](digest.png)" in markdown


def test_a_digest_round_trips_through_json():
    digest = sample_digest()
    assert Digest.from_json(json.loads(digest.dumps())) == digest


# --- the whole path: stored events → digest → Slack and Zendesk sandboxes ----------------


@pytest.fixture
def slack():
    box = SlackSandbox()
    box.add_user(MANAGER, "mia", "mia@sandbox.example")
    box.add_user(GONE, "gus", "gus@sandbox.example", deleted=True)
    box.add_user(ADMIN, "ada", "ada@sandbox.example")
    box.add_channel(DIGEST_CHANNEL, "support-managers")
    with serve(box):
        yield box


@pytest.fixture
def settings(kb_settings, slack, zendesk, tmp_path):
    return connected_settings(
        kb_settings,
        slack,
        zendesk,
        tmp_path,
        slack_admin_ids=[ADMIN],
        slack_manager_ids=[MANAGER, GONE],
        slack_digest_channel=DIGEST_CHANNEL,
    )


@pytest.fixture
def annotated(settings, kb_db):
    from sandboxes.agents.policy import AgentPolicy

    annotate_samples(settings, kb_db, policy=AgentPolicy(noise=0.1, max_missing=2), variants=2)
    return kb_db


@pytest.fixture
def services(settings, annotated):
    return build_services(settings, annotated, build_deferrer(annotated.url))


def run_digest_worker(services) -> None:
    build_app(services.slack.db.url, [digest_jobs.blueprint()]).run_worker(
        wait=False,
        install_signal_handlers=False,
        listen_notify=False,
        additional_context={"slack": services.slack},
    )


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def this_week(services):
    return services.slack.digest.window(datetime.now(UTC).date())


def digest_messages(slack, channel):
    """The digest's summary messages (the chart arrives as its own file message)."""
    return [m for m in slack.messages(channel) if OPEN_REPORT in json.dumps(m.get("blocks"))]


def test_preview_writes_a_readable_report_from_stored_events(settings, annotated, tmp_path):
    env = {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "AITL_DATA_DIR": str(settings.data_dir),
    }
    out = tmp_path / "preview"
    week = datetime.now(UTC).date().isoformat()
    ran = CliRunner().invoke(cli, ["digest", "preview", "--out", str(out), "--week", week], env=env)
    assert ran.exit_code == 0, ran.output
    markdown = (out / "digest.md").read_text()
    assert Image.open(out / "digest.png").size == CHART_SIZE
    clicks = rows(annotated, "SELECT count(*) FROM feedback_events")[0][0]
    assert f"| Agent clicks | {clicks:,} |" in markdown
    assert "USIM0" in markdown and "### 1." in markdown, "agents and gaps from real events"
    assert rows(annotated, "SELECT count(*) FROM digest_reports") == [(0,)], (
        "preview stores nothing"
    )
    bad = CliRunner().invoke(
        cli, ["digest", "preview", "--out", str(out), "--week", "soon"], env=env
    )
    assert bad.exit_code != 0 and "not a date" in bad.output


def test_the_scheduled_digest_reaches_each_recipient_once_per_week(services, slack):
    week = this_week(services).start.date().isoformat()
    assert digest_jobs.defer_send(services.slack.queue, week)
    assert not digest_jobs.defer_send(services.slack.queue, week), "one waiting send at a time"
    run_digest_worker(services)
    assert digest_jobs.defer_send(services.slack.queue, week)  # next week's tick, same week
    run_digest_worker(services)

    deliveries = rows(
        services.slack.db,
        "SELECT recipient, kind, status, last_error, message_ts IS NOT NULL, file_id"
        " FROM digest_deliveries ORDER BY recipient",
    )
    by = {r[0]: r for r in deliveries}
    assert set(by) == {MANAGER, GONE, DIGEST_CHANNEL}
    assert by[MANAGER][1:3] == ("dm", "sent") and by[MANAGER][4] and by[MANAGER][5]
    assert by[DIGEST_CHANNEL][1:3] == ("channel", "sent")
    assert by[GONE][2] == "skipped" and "left the workspace" in by[GONE][3]
    dm = rows(
        services.slack.db, "SELECT channel FROM digest_deliveries WHERE recipient = %s", MANAGER
    )[0][0]
    assert len(digest_messages(slack, dm)) == 1 and len(digest_messages(slack, DIGEST_CHANNEL)) == 1
    charts = [f for f in slack.files() if f["name"].startswith("aitl-digest-")]
    assert len(charts) == 2
    home = json.dumps(home_view(services.slack.home(ADMIN)).to_dict())
    assert f"Last digest (week of {week}): sent to 2 of 3" in home
    assert f"<@{GONE}>: skipped, {GONE} has left the workspace" in home
    assert {c.get("mimetype") for c in charts} <= {"image/png", None}


def test_an_upload_failure_is_retried_without_posting_twice(services, slack):
    window = this_week(services)
    slack.fail("files.getUploadURLExternal", status=500, times=3)
    with pytest.raises(SlackUnavailable, match="1 recipients not reached"):
        services.slack.digest.send(window)
    report = services.slack.digest.send(window)
    assert len(report.sent) == 1 and set(report.already) | set(report.skipped) == {
        MANAGER,
        GONE,
        DIGEST_CHANNEL,
    } - set(report.sent)
    assert len(digest_messages(slack, DIGEST_CHANNEL)) == 1
    attempts = dict(rows(services.slack.db, "SELECT recipient, attempts FROM digest_deliveries"))
    assert attempts[MANAGER] == 2 or attempts[DIGEST_CHANNEL] == 2


@pytest.fixture
def web(settings, annotated):
    with serve_in_thread(create_app(settings, database=annotated)) as server:
        yield server


def post(slack, web, payload) -> httpx.Response:
    body = encode_interactivity(payload)
    return httpx.post(
        f"{web.url}/slack/events", content=body, headers=slack.signed_headers(body), timeout=10
    )


def click(slack, web, user, channel, message, action_id):
    return post(slack, web, slack.block_actions(user, channel, message["ts"], action_id))


def test_managers_open_the_report_and_admins_draft_a_help_center_article(
    services, slack, zendesk, web
):
    window = this_week(services)
    services.slack.digest.send(window)
    [message] = digest_messages(slack, DIGEST_CHANNEL)

    refused = click(slack, web, AGENT_ALICE, DIGEST_CHANNEL, message, OPEN_REPORT)
    assert refused.status_code == 200 and not slack.open_views(AGENT_ALICE)
    assert click(slack, web, MANAGER, DIGEST_CHANNEL, message, OPEN_REPORT).status_code == 200
    [view] = slack.open_views(MANAGER)
    assert view["callback_id"] == REPORT_VIEW
    assert DRAFT_ARTICLE not in json.dumps(view), "only admins draft articles"

    click(slack, web, ADMIN, DIGEST_CHANNEL, message, OPEN_REPORT)
    [admin_view] = slack.open_views(ADMIN)
    first_gap = next(b for b in admin_view["blocks"] if b.get("accessory"))
    digest = services.slack.digest.stored(window.start.date())
    gap = digest.gaps[0]
    assert first_gap["accessory"]["value"] == f"{digest.week_start}:{gap.key}"
    before = {a["id"] for a in zendesk.articles()}
    # a double click (both sent before the modal changed) must not make two drafts
    double = [
        slack.block_actions(
            ADMIN, None, None, DRAFT_ARTICLE, first_gap["block_id"], view=admin_view["id"]
        )
        for _ in range(2)
    ]
    assert [post(slack, web, payload).status_code for payload in double] == [200, 200]
    run_digest_worker(services)
    [(status, url, article_id)] = rows(
        services.slack.db, "SELECT status, url, article_id FROM gap_article_drafts"
    )
    assert status == "created" and article_id and url
    article = zendesk.article(article_id)
    assert article["draft"] is True and article["title"] == gap.title
    assert article["id"] not in before
    assert len(zendesk.articles()) == len(before) + 1
    dm, _ = slack.open_conversation([ADMIN])
    assert any("Help Center draft created" in m.get("text", "") for m in slack.messages(dm))
    [updated] = slack.open_views(ADMIN)
    buttons = [b["accessory"]["value"] for b in updated["blocks"] if b.get("accessory")]
    assert f"{digest.week_start}:{gap.key}" not in buttons
    assert len(buttons) == len(digest.gaps) - 1 and "Drafting" in json.dumps(updated)


def test_the_digest_lists_the_weeks_model_changes_whoever_made_them(db):
    """Managers see what served the drafts this week: each promotion and rollback in the week
    (by a cycle, an admin in App Home, the CLI), oldest first, and nothing from other weeks."""
    from flywheel import store

    window = week_of(datetime(2026, 11, 18, tzinfo=UTC))  # 16–22 Nov
    with db.connection() as conn:
        for version in ("r1", "r2", "r3"):
            store.add_model(
                conn, kind="retriever", version=version, path=f"/m/{version}", status="challenger"
            )
        store.crown(conn, "retriever", "r1", "recall@75 0.50 → 0.60")
        store.crown(conn, "retriever", "r2", "promoted by <@U0ADMIN> in App Home")
        promotion = store.undoable_promotion(conn, "retriever")
        store.undo(conn, "retriever", promotion, "rolled back from the CLI")
        store.crown(conn, "retriever", "r3", "recall@75 0.60 → 0.66")
        for version, promoted, undone in (
            ("r1", "2026-11-09 02:10", None),  # the week before
            ("r2", "2026-11-17 09:30", "2026-11-18 14:05"),
            ("r3", "2026-11-23 02:10", None),  # the week after
        ):
            conn.execute(
                "UPDATE model_promotions SET promoted_at = %s, undone_at = %s WHERE version = %s",
                (f"{promoted}+00", f"{undone}+00" if undone else None, version),
            )

        def no_model(texts):
            raise AssertionError("no gaps: nothing to embed")

        digest = build_digest(conn, window, no_model)
    assert [(c["version"], c["change"], c["other"]) for c in digest.model_changes] == [
        ("r2", "promoted", "r1"),
        ("r2", "rolled back", "r1"),
    ]
    markdown = render_markdown(digest)
    assert (
        "- retriever r2 promoted, replacing r1 (Tue 17 Nov 09:30 UTC):"
        " promoted by <@U0ADMIN> in App Home" in markdown
    )
    assert (
        "- retriever r2 rolled back, r1 live again (Wed 18 Nov 14:05 UTC):"
        " rolled back from the CLI" in markdown
    )
    report = json.dumps(report_modal(digest, can_draft=False).to_dict(), ensure_ascii=False)
    assert "promoted by <@U0ADMIN> in App Home" in report, "the admin is a mention in Slack"
    summary = json.dumps([b.to_dict() for b in digest_blocks(digest)], ensure_ascii=False)
    assert "Model changes this week: retriever r2 promoted, replacing r1" in summary
    assert Digest.from_json(json.loads(digest.dumps())) == digest


def test_a_digest_stored_before_model_changes_were_reported_still_opens():
    stored = json.loads(sample_digest().dumps())
    del stored["model_changes"]
    digest = Digest.from_json(stored)
    assert digest.model_changes == []
    assert "No model was promoted or rolled back." in render_markdown(digest)
