"""Reviews of the judge on the real database (flywheel.judge_review, flywheel.store): a review
stored once per reviewer and event, a later answer replacing the earlier one; the sample a
reviewer is shown (drops and keeps, drops spread over the rules, none already reviewed, only
clicks on a card); what each item tells the reviewer; Cohen's kappa against hand-computed
values; and the digest's line in Markdown and in Slack."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from aitl.app.wiring import JudgeReviewQueue
from bot import store as bot_store
from bot.digest.views import digest_blocks, report_modal
from bot.judge_review_views import AGREE, DISAGREE, ReviewItem, ReviewPanel, review_blocks
from flywheel import judge_review, store
from flywheel.digest.content import build_digest
from flywheel.digest.metrics import week_of
from flywheel.digest.render import render_markdown
from flywheel.digest.report import Digest, judge_agreement_line
from flywheel.store import ReviewCandidate
from tests.support.drafts import live_chunks
from tests.support.judge_review import Click, judged_clicks, verdicts_of

T0 = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)  # a Wednesday
REVIEWER, OTHER = "U0REVIEWER", "U0OTHER"


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def queue(db, reviewer=REVIEWER, size=6):
    with db.connection() as conn:
        return judge_review.review_queue(
            conn,
            reviewer,
            size=size,
            seed=42,
            shown=lambda ids: bot_store.sets_with_cards(conn, sorted(ids)),
        )


def review(db, run_id, event_id, agrees, at, reviewer=REVIEWER) -> bool:
    with db.connection() as conn:
        return store.save_review(conn, run_id, event_id, reviewer, agrees, at)


# --- the store ------------------------------------------------------------------------------


def test_a_review_is_stored_once_per_reviewer_and_a_later_answer_replaces_it(db):
    run, (dropped, kept) = judged_clicks(
        db,
        [Click("preference", "A", keep=False, rule="too_fast"), Click("adoption", "not_used")],
    )
    standing = "SELECT run_id, event_id, reviewer_id, agrees, reviewed_at FROM judge_reviews"
    assert review(db, run, dropped, True, T0)
    assert rows(db, standing) == [(run, dropped, REVIEWER, True, T0)]
    with db.connection() as conn:
        [found] = store.reviews(conn)
    assert (found.keep, found.agrees) == (False, True), "the verdict the answer was about"

    # the reviewer changes their mind: one standing answer, the later one
    assert review(db, run, dropped, False, T0 + timedelta(minutes=1))
    assert rows(db, standing) == [(run, dropped, REVIEWER, False, T0 + timedelta(minutes=1))]
    # a late copy of the first click (answered before the standing one) changes nothing
    assert review(db, run, dropped, True, T0 + timedelta(seconds=30))
    assert rows(db, standing + " WHERE reviewer_id = %s", REVIEWER) == [
        (run, dropped, REVIEWER, False, T0 + timedelta(minutes=1))
    ]
    # another reviewer has their own answer
    assert review(db, run, dropped, True, T0, reviewer=OTHER)
    assert rows(db, "SELECT count(*) FROM judge_reviews") == [(2,)]

    # a later cycle judged the same click: answering its verdict replaces the answer
    later, _ = judged_clicks(db, [Click("relevance", "relevant", chunk=1)])
    verdicts_of(db, later, [dropped])
    assert review(db, later, dropped, True, T0 + timedelta(hours=1))
    assert rows(db, standing + " WHERE reviewer_id = %s", REVIEWER) == [
        (later, dropped, REVIEWER, True, T0 + timedelta(hours=1))
    ]

    # a verdict the run does not hold (another run's click, an unknown event): nothing stored
    assert not review(db, later, kept, True, T0 + timedelta(hours=2))
    assert not review(db, run, 10**12, True, T0 + timedelta(hours=2))
    with db.connection() as conn:
        assert store.verdict_kept(conn, later, kept) is None
        assert store.verdict_kept(conn, run, kept) is True
        assert [r.event_id for r in store.reviews(conn, since=T0 + timedelta(minutes=30))] == [
            dropped
        ]
        assert len(store.reviews(conn, until=T0 + timedelta(minutes=30))) == 1  # OTHER's
    assert rows(db, "SELECT count(*) FROM judge_reviews") == [(2,)]


# --- the sample -----------------------------------------------------------------------------


def judged_mix(db):
    """Four rules dropped clicks (too_fast most), six clicks were kept; one dropped click has
    no card, and one kept adoption was read from the reply sent in Zendesk."""
    clicks = [
        *[Click("preference", "A", keep=False, rule="too_fast") for _ in range(5)],
        Click("relevance", "relevant", keep=False, rule="no_shared_words", chunk=11),
        Click("missing_knowledge", "article", keep=False, rule="already_shown", chunk=12),
        Click("adoption", "as_is", keep=False, rule="preference_vs_sent", label="B"),
        Click("relevance", "relevant", keep=False, rule="off_topic", chunk=13, card=False),
        *[Click("relevance", "not_relevant", chunk=20 + n) for n in range(3)],
        Click("preference", "B"),
        Click("adoption", "edited", label="A"),
        Click("missing_knowledge", "note", rationale={"note": "the router reset steps"}),
        Click("adoption", "as_is", label="A", source="zendesk"),
    ]
    run, ids = judged_clicks(db, clicks)
    return run, dict(zip(ids, clicks, strict=True))


def test_the_sample_is_half_drops_and_half_keeps_with_drops_spread_over_rules(db):
    # an earlier run and a later failed one: neither is sampled
    judged_clicks(db, [Click("preference", "tie", keep=False, rule="too_fast")])
    run, clicks = judged_mix(db)
    judged_clicks(db, [Click("preference", "A", keep=False, rule="too_fast")], status="failed")

    shown_run, items = queue(db, size=6)
    assert shown_run == run
    drops = [i for i in items if not i.keep]
    keeps = [i for i in items if i.keep]
    assert (len(drops), len(keeps)) == (3, 3)
    rules = [clicks[i.event_id].rule for i in drops]
    assert len(set(rules)) == 3, f"three rules, not the commonest thrice: {rules}"
    assert {i.run_id for i in items} == {run}

    _, five = queue(db, size=5)
    assert sorted(i.keep for i in five) == [False, False, False, True, True]
    assert len({clicks[i.event_id].rule for i in five if not i.keep}) == 3

    # everything at once: every click shown but the one without a card and the sent reply
    _, every = queue(db, size=20)
    left_out = {e for e, c in clicks.items() if not c.card or c.source == "zendesk"}
    assert {i.event_id for i in every} == set(clicks) - left_out
    assert {i.kind for i in every} == {"preference", "relevance", "missing_knowledge", "adoption"}

    # seeded: the same sample on every look, for every reviewer
    assert [i.event_id for i in queue(db, size=6)[1]] == [i.event_id for i in items]
    assert [i.event_id for i in queue(db, OTHER, size=6)[1]] == [i.event_id for i in items]


def test_what_a_reviewer_answered_leaves_their_queue_only(db):
    run, _ = judged_mix(db)
    _, items = queue(db, size=6)
    answered = items[0].event_id
    assert review(db, run, answered, True, T0)
    _, again = queue(db, size=6)
    assert answered not in {i.event_id for i in again}
    assert len(again) == 6, "another verdict takes its place"
    assert answered in {i.event_id for i in queue(db, OTHER, size=6)[1]}
    # everything answered: nothing left
    for item in queue(db, size=20)[1]:
        review(db, run, item.event_id, False, T0)
    assert queue(db, size=6) == (run, [])


def candidate(n: int, keep: bool, bucket: str) -> ReviewCandidate:
    return ReviewCandidate(
        run_id=1,
        event_id=n,
        keep=keep,
        reason="",
        bucket=bucket,
        sample_key=f"{n:04d}",
        kind="relevance",
        value="relevant",
        draft_set_id=n,
        draft_id=None,
        chunk_ids=[],
        agent_id="U1",
        rationale={},
        clicked_at=T0,
    )


def test_the_sample_takes_more_of_one_side_when_the_other_runs_short():
    drops = [candidate(n, False, f"drop:{'ab'[n % 2]}") for n in range(10)]
    one_keep = [candidate(100, True, "keep:relevance")]
    picked = judge_review.sample(drops + one_keep, 5)
    assert [c.keep for c in picked].count(True) == 1 and len(picked) == 5
    assert {c.bucket for c in picked if not c.keep} == {"drop:a", "drop:b"}
    keeps = [candidate(200 + n, True, "keep:relevance") for n in range(8)]
    assert [c.keep for c in judge_review.sample(drops[:1] + keeps, 5)].count(False) == 1
    assert judge_review.sample([], 5) == []
    assert [c.event_id for c in judge_review.sample(drops, 3)] == [0, 1, 2], "a, b, a in order"


def test_each_item_tells_the_reviewer_the_ticket_the_click_and_the_verdict(kb_db):
    with kb_db.connection() as conn:
        chunk = live_chunks(conn, 1)[0]
        title, text = conn.execute(
            "SELECT d.title, c.text FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id"
            " WHERE c.id = %s",
            (chunk,),
        ).fetchone()
    clicks = [
        Click("relevance", "relevant", keep=False, rule="no_shared_words", chunk=chunk),
        Click("preference", "B"),
        Click("adoption", "edited", label="A", rationale={"label": "A", "reason": "wrong_tone"}),
        Click("missing_knowledge", "url", rationale={"url": "https://help.example/reset"}),
    ]
    run, ids = judged_clicks(kb_db, clicks, query="Hub offline <b>tonight</b>")
    _, items = queue(kb_db, size=10)
    by_kind = {i.kind: i for i in items}
    relevance = by_kind["relevance"]
    assert (relevance.passage, relevance.keep) == (title, False)
    assert relevance.excerpt and text.split()[0] in relevance.excerpt
    assert relevance.query == "Hub offline <b>tonight</b>"
    preference = by_kind["preference"]
    assert preference.chosen == "B"
    assert preference.drafts == {
        "A": "Unplug the hub for ten seconds, then plug it back in. Best, Support",
        "B": "Hold the reset button until the light blinks white. Best, Support",
    }, "the drafts' first lines, past the greeting"
    assert (by_kind["adoption"].chosen, by_kind["adoption"].note) == ("A", "wrong_tone")
    assert by_kind["missing_knowledge"].note == "https://help.example/reset"

    # App Home draws them: the verdict, the ticket (escaped), the mark, two buttons each
    panel = ReviewPanel(run, [ReviewItem(**dataclasses.asdict(i)) for i in items], None)
    blocks = [b.to_dict() for b in review_blocks(panel)]
    text = json.dumps(blocks, ensure_ascii=False)
    assert f"marked *relevant*: *{title}* — " in text
    assert "*Dropped*: marked relevant a passage sharing no content word" in text
    assert "Hub offline &lt;b&gt;tonight&lt;/b&gt;" in text
    assert "preferred *draft B*" in text and "*edited draft A* (why: wrong_tone)" in text
    assert "named as *missing*: “https://help.example/reset”" in text
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [e["action_id"] for e in buttons] == [AGREE, DISAGREE] * 4
    assert {e["value"] for e in buttons} == {f"{run}:{e}" for e in ids}
    assert [e["text"]["text"] for e in buttons[:2]] == ["Judge is right", "Judge is wrong"]


def test_app_home_gets_the_flywheel_items_field_for_field(settings, db):
    run, ids = judged_clicks(db, [Click("preference", "A", keep=False, rule="too_fast")])
    assert [f.name for f in dataclasses.fields(ReviewItem)] == [
        f.name for f in dataclasses.fields(judge_review.ReviewItem)
    ]
    panel = JudgeReviewQueue(settings, db).panel(REVIEWER)
    assert panel.run_id == run and [i.event_id for i in panel.items] == ids
    assert panel.agreement == {
        "period": {"n": 0, "agreed": 0, "kappa": None},
        "all_time": {"n": 0, "agreed": 0, "kappa": None},
    }


# --- agreement ------------------------------------------------------------------------------


def test_kappa_against_hand_computed_values():
    # judge keeps 6, drops 4; reviewers: 5 of the keeps right, 3 of the drops right, so the
    # table is keep/keep 5, keep/drop 1, drop/keep 1, drop/drop 3: p_o = 0.8, p_e = 0.6 × 0.6
    # + 0.4 × 0.4 = 0.52, kappa = (0.8 − 0.52) / (1 − 0.52) = 7/12
    pairs = [(True, True)] * 5 + [(True, False)] + [(False, False)] + [(False, True)] * 3
    found = judge_review.agreement(pairs)
    assert (found.n, found.agreed) == (10, 8)
    assert found.kappa == pytest.approx(7 / 12)
    assert found.to_json() == {"n": 10, "agreed": 8, "kappa": 0.5833}

    assert judge_review.agreement([]) == judge_review.Agreement(0, 0, None)
    # one label on both sides (the judge kept all, reviewers agreed): kappa is 0 / 0
    same = judge_review.agreement([(True, True)] * 4)
    assert (same.kappa, same.share) == (None, 1.0)
    # the judge kept all, reviewers split: kappa is defined, and 0 (no better than chance)
    assert judge_review.agreement([(True, True), (True, False)]).kappa == pytest.approx(0.0)
    assert judge_review.agreement([(True, True), (False, True)]).kappa == pytest.approx(1.0)
    assert judge_review.agreement([(True, False), (False, False)]).kappa == pytest.approx(-1.0)


def test_the_agreement_line_in_words():
    def figures(n, agreed, kappa):
        return {"n": n, "agreed": agreed, "kappa": kappa}

    line = judge_agreement_line(
        {"period": figures(24, 20, 0.6234), "all_time": figures(61, 50, 0.58)}
    )
    assert line == "Judge vs reviewers: κ 0.62 (n = 24; agreed on 20), all time κ 0.58 (n = 61)"
    quiet = {"period": figures(0, 0, None), "all_time": figures(61, 50, 0.58)}
    assert judge_agreement_line(quiet) == (
        "Judge vs reviewers: no reviews this week, all time κ 0.58 (n = 61)"
    )
    assert judge_agreement_line(quiet, "in the last 7 days").startswith(
        "Judge vs reviewers: no reviews in the last 7 days, all time"
    )
    same = {"period": figures(4, 4, None), "all_time": figures(4, 4, None)}
    assert judge_agreement_line(same) == (
        "Judge vs reviewers: κ n/a (n = 4; agreed on 4, 100% agreed: one label throughout),"
        " all time κ n/a (n = 4, 100% agreed: one label throughout)"
    )
    none = {"period": figures(0, 0, None), "all_time": figures(0, 0, None)}
    assert judge_agreement_line(none).startswith("Judge vs reviewers: no reviews yet")


def test_the_digest_reports_the_judge_against_reviewers_in_both_views(db):
    window = week_of(T0)
    # relevance marks clicked before the week: nothing in it to cluster as a knowledge gap
    clicks = [Click("relevance", "relevant", keep=n % 2 == 0, chunk=n + 1) for n in range(7)]
    run, ids = judged_clicks(db, clicks, clicked_at=window.start - timedelta(days=30))
    keep = {e: c.keep for e, c in zip(ids, clicks, strict=True)}
    in_week = window.start + timedelta(days=1)
    # the week: (kept, agreed) = (T, T), (T, T), (F, T), (F, F): p_o = 3/4, the judge keeps
    # 1/2, reviewers 3/4: p_e = 1/2 · 3/4 + 1/2 · 1/4 = 1/2, kappa = (3/4 − 1/2) / (1/2) = 0.5
    # before it, (T, F) and (F, T): all six give p_o = 4/6, p_e = 1/2, kappa = 1/3
    kept, dropped = [e for e in ids if keep[e]], [e for e in ids if not keep[e]]
    answers = [
        (kept[0], True, in_week),
        (kept[1], True, in_week),
        (dropped[0], True, in_week),
        (dropped[1], False, in_week),
        (kept[2], False, window.start - timedelta(days=3)),
        (dropped[2], True, window.start - timedelta(days=3)),
        (kept[3], False, window.end + timedelta(hours=1)),  # after the week: in neither
    ]
    for event_id, agrees, at in answers:
        assert review(db, run, event_id, agrees, at)

    def no_model(texts):
        raise AssertionError("no gaps: nothing to embed")

    with db.connection() as conn:
        digest = build_digest(conn, window, no_model)
    assert digest.judge_agreement == {
        "period": {"n": 4, "agreed": 3, "kappa": 0.5},
        "all_time": {"n": 6, "agreed": 4, "kappa": 0.3333},
    }
    line = "Judge vs reviewers: κ 0.50 (n = 4; agreed on 3), all time κ 0.33 (n = 6)"
    markdown = render_markdown(digest)
    assert f"## The judge, reviewed\n\n- {line}\n" in markdown
    summary = json.dumps([b.to_dict() for b in digest_blocks(digest)], ensure_ascii=False)
    assert line in summary
    report = json.dumps(
        [b.to_dict() for b in report_modal(digest, can_draft=False).blocks], ensure_ascii=False
    )
    assert line in report
    again = Digest.from_json(json.loads(digest.dumps()))
    assert again.judge_agreement == digest.judge_agreement

    # a digest stored before reviews existed shows no line rather than a wrong one
    older = Digest.from_json({k: v for k, v in digest.to_json().items() if k != "judge_agreement"})
    assert older.judge_agreement is None
    assert "Judge vs reviewers" not in render_markdown(older)
    assert "Judge vs reviewers" not in json.dumps([b.to_dict() for b in digest_blocks(older)])
