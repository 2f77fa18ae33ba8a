"""The judge watched from cycle to cycle: each rule's share of each kind of click, against
its own history; an unusual share is said (and the rule skipped, per settings), and
`aitl flywheel runs` / `aitl flywheel judge` show the figures with the cycles before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from aitl.app.cli import app
from flywheel import store
from flywheel.judge import Verdict
from flywheel.judge_watch import JudgeWatch, find_unusual, lines, measure, warning
from flywheel.reports import cycle_note, evidence_line, judge_summary
from tests.flywheel.test_flywheel_parts import event

EVIDENCE = {"tickets_before": 7, "marks_before": 12, "tickets_after": 6, "marks_after": 9}
EVIDENCE["needed"] = 3


def watch(dropped: dict[str, dict[str, int]], kinds: dict[str, int] | None = None) -> JudgeWatch:
    return JudgeWatch(kinds or {"relevance": 100, "adoption": 50}, dropped)


def test_every_rule_that_doubted_an_event_counts_it_under_its_kind():
    events = [
        event(1, "relevance", "relevant", chunk=100),
        event(2, "relevance", "relevant", chunk=101),
        event(3, "adoption", "as_is", label="A"),
    ]
    verdicts = [
        Verdict(1, False, "…", "rules", ("too_fast", "off_topic")),
        Verdict(2, True, "consistent", "rules"),
        Verdict(3, False, "…", "rules", ("too_fast",)),
    ]
    found = measure(events, verdicts)
    assert found.kinds == {"adoption": 1, "relevance": 2}
    assert found.dropped == {
        "off_topic": {"relevance": 1},
        "too_fast": {"adoption": 1, "relevance": 1},
    }
    assert JudgeWatch.from_counts({"judge_rules": found.as_counts()}).dropped == found.dropped


def test_a_share_above_the_ceiling_is_unusual_from_the_first_cycle():
    now = watch({"off_topic": {"relevance": 61}, "too_fast": {"adoption": 5}})
    [found] = find_unusual(now, [], ceiling=0.5, surge=3.0)
    assert (found.rule, found.kind) == ("off_topic", "relevance")
    assert "61% of 100 relevance marks, above the ceiling of 50%" in found.why
    few = watch({"too_fast": {"adoption": 12}}, {"adoption": 19})
    assert find_unusual(few, [], ceiling=0.5, surge=3.0) == [], "19 clicks are too few to tell"


def test_a_surge_needs_history_and_both_a_multiple_and_a_margin():
    history = [watch({"too_fast": {"adoption": n}}) for n in (4, 5, 6)]  # 8%, 10%, 12%
    surge = watch({"too_fast": {"adoption": 20}})  # 40%: 4× the median and +30 points
    [found] = find_unusual(surge, history, ceiling=0.5, surge=3.0)
    assert "against a median of 10% over its last 3 cycles" in found.why
    assert find_unusual(surge, history[:2], ceiling=0.5, surge=3.0) == [], "too little history"
    small = [watch({"too_fast": {"adoption": 1}}) for _ in range(3)]  # 2%
    mild = watch({"too_fast": {"adoption": 4}})  # 8%: 4×, but only 6 points more
    assert find_unusual(mild, small, ceiling=0.5, surge=3.0) == []
    # a cycle where the rule doubted nothing of a kind it judged counts as 0 in the history
    quiet = [watch({}) for _ in range(3)]
    assert find_unusual(watch({"too_fast": {"adoption": 6}}), quiet, ceiling=0.5, surge=3.0)


def test_the_lines_show_each_rule_with_the_cycles_before_and_the_warning_says_what_ran():
    history = [watch({"too_fast": {"adoption": n}}) for n in (4, 5, 6)]
    now = watch({"too_fast": {"adoption": 20}, "unused_for_lack": {"relevance": 12}})
    now.unusual = find_unusual(now, history, ceiling=0.5, surge=3.0)
    assert {u.rule for u in now.unusual} == {"too_fast", "unused_for_lack"}, "0% before: a surge"
    now.skipped = ["too_fast"]
    shown = lines(now, history)
    assert shown[0] == (
        "too_fast, adoption clicks: 40% of 50 (before: 8%, 10%, 12%) ⚠ unusual, skipped this cycle"
    )
    assert shown[1] == "unused_for_lack, relevance marks: 12% of 100 (before: 0%, 0%, 0%) ⚠ unusual"
    text = warning(now.unusual, now.skipped)
    assert "too_fast dropped 40% of 50 adoption clicks" in text
    assert "judged the clicks without too_fast" in text
    assert "still used it" in warning(now.unusual, [])
    # a rule that did not run in the cycles before (not calibrated yet) has no history there
    for w in history:
        w.ran = ["too_fast"]
    now.unusual = find_unusual(now, history, ceiling=0.5, surge=3.0)
    assert [u.rule for u in now.unusual] == ["too_fast"]


def test_the_evidence_and_the_summary_say_when_judging_left_too_few():
    thin = {
        "tickets_before": 5,
        "marks_before": 9,
        "tickets_after": 2,
        "marks_after": 3,
        "needed": 3,
    }
    assert evidence_line(thin) == (
        "5 (9 marks) → 2 (3 marks), fewer than the 3 the gate needs: the judge left too few"
    )
    assert (
        evidence_line({**thin, "tickets_after": 4, "marks_after": 7}) == "5 (9 marks) → 4 (7 marks)"
    )
    counts = {
        "judge": {
            "retriever": {"events": 80, "filtered": 10},
            "generator": {"events": 20, "filtered": 10},
        },
        "judge_rules": {
            "dropped": {"too_fast": {"adoption": 9}, "unused_for_lack": {"relevance": 11}},
            "unusual": [{"rule": "too_fast", "kind": "adoption", "share": 0.45, "why": "…"}],
            "skipped": ["too_fast"],
        },
    }
    assert (
        judge_summary(counts) == "20% of 100, most by unused_for_lack; unusual: too_fast (skipped)"
    )
    note = cycle_note(
        run_id=4, trigger="schedule", status="succeeded", decisions={}, warnings=["W"]
    )
    assert note.endswith("\n\nW") and note.startswith("The weekly retrain (run 4) finished")


def test_flywheel_judge_shows_each_rule_over_the_cycles_and_runs_sums_it_up(
    database_url, db, tmp_path
):
    quiet = watch({"too_fast": {"adoption": 5}}).as_counts()
    loud = watch({"too_fast": {"adoption": 30}, "off_topic": {"relevance": 4}})
    loud.unusual = find_unusual(loud, [], ceiling=0.5, surge=3.0)
    loud.skipped = ["too_fast"]
    evidence = {
        "tickets_before": 7,
        "marks_before": 12,
        "tickets_after": 6,
        "marks_after": 9,
        "needed": 3,
    }
    with db.connection() as conn:
        for rules in (quiet, loud.as_counts()):
            run_id = store.start_run(conn, "schedule", datetime.now(UTC), {})
            counts = {
                "judge": {"retriever": {"events": 100, "filtered": 4}},
                "judge_rules": rules,
                "gate_evidence": evidence,
            }
            store.finish_run(conn, run_id, "succeeded", counts=counts, decisions={}, artefacts={})
    env = {"DATABASE_URL": database_url, "AITL_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "250"}
    shown = CliRunner().invoke(app, ["flywheel", "judge"], env=env, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "10% of 50" in text and "60% of 50 ⚠ (skipped)" in text
    assert "4% of 100" in text and "7 (12 marks) → 6 (9 marks)" in text
    listed = CliRunner().invoke(app, ["flywheel", "runs"], env=env, catch_exceptions=False)
    listed_text = " ".join(listed.output.split())
    assert "4% of 100, most by too_fast; unusual: too_fast (skipped)" in listed_text


def test_app_home_and_the_digest_show_the_last_cycles_judge_against_the_ones_before(
    database_url, db, tmp_path
):
    from aitl.app.wiring import FlywheelDigest, judge_panel
    from aitl.core.queue import build_deferrer
    from bot.digest.views import digest_blocks, report_modal
    from bot.home_views import HomeContent, home_view
    from bot.services import BotServices
    from flywheel.digest.content import digest_of
    from flywheel.digest.metrics import week_of
    from flywheel.digest.render import render_markdown
    from flywheel.digest.report import Digest
    from flywheel.events import AgentStats
    from tests.conftest import make_settings

    settings = make_settings(database_url, tmp_path, llm_challenger=False)
    history = [watch({"too_fast": {"adoption": n}}) for n in (4, 5, 6)]
    now = watch({"too_fast": {"adoption": 30}, "unused_for_lack": {"relevance": 12}})
    now.unusual = find_unusual(now, history, ceiling=0.5, surge=3.0)
    now.skipped = ["too_fast"]
    evidence = EVIDENCE
    with db.connection() as conn:
        for found in (*history, now):
            run_id = store.start_run(conn, "schedule", datetime.now(UTC), {})
            counts = {
                "judge": {"retriever": {"events": 100, "filtered": 12}},
                "judge_rules": found.as_counts(),
                "gate_evidence": evidence,
            }
            store.finish_run(conn, run_id, "succeeded", counts=counts, decisions={}, artefacts={})

    rules_line = (
        "too_fast, adoption clicks: 60% of 50 (before: 8%, 10%, 12%) ⚠ unusual, skipped this cycle"
    )
    services = BotServices(
        settings,
        db,
        build_deferrer(db.url),
        digest_content=FlywheelDigest(db),
        judge=lambda: judge_panel(db),
    )
    panel = services.admin_panel()
    assert panel.judge is not None and panel.judge["run_id"] == run_id
    home = json.dumps(
        home_view(HomeContent("UADMIN", True, AgentStats({}, 0, {}, None), panel)).to_dict(),
        ensure_ascii=False,
    )
    assert "*The judge* (what it left out of training)" in home
    assert rules_line in home and "7 (12 marks) → 6 (9 marks)" in home
    assert "The cycle judged without too_fast" in home

    digest = digest_of(settings, db, week_of(datetime.now(UTC) + timedelta(days=7)))
    assert digest.judge is not None and digest.judge["rules"][0] == rules_line
    markdown = render_markdown(digest)
    section = markdown.split("## The judge\n", 1)[1].split("\n## ", 1)[0]
    head = f"- Run {run_id}: dropped 12% of 100, most by too_fast; unusual: too_fast (skipped),"
    assert head in section and f"- {rules_line}" in section
    assert "- ⚠ too_fast dropped 60% of 50 adoption clicks" in section
    modal = report_modal(digest, can_draft=False).blocks
    report = json.dumps([b.to_dict() for b in modal], ensure_ascii=False)
    assert "*The judge*" in report and rules_line in report
    summary = json.dumps([b.to_dict() for b in digest_blocks(digest)], ensure_ascii=False)
    assert ":warning: The judge: too_fast dropped 60% of 50 adoption clicks" in summary
    assert Digest.from_json(json.loads(digest.dumps())).judge == digest.judge

    # a week before any cycle judged anything: no section
    earlier = digest_of(settings, db, week_of(datetime.now(UTC) - timedelta(days=14)))
    assert earlier.judge is None and "## The judge\n" not in render_markdown(earlier)


def test_a_judge_that_leaves_the_gate_too_few_held_out_tickets_says_so(settings, db):
    import pytest

    from flywheel.cycle import Flywheel
    from flywheel.datasets import Datasets
    from flywheel.evaluation import EvalQuery
    from flywheel.exceptions import NotEnoughData

    data = Datasets(eval_queries=[EvalQuery(f"set:{n}", "q", frozenset({n})) for n in (1, 2)])
    cycle = Flywheel(settings.model_copy(update={"flywheel_min_eval_queries": 3}), db)
    thinned = {**EVIDENCE, "tickets_before": 5, "tickets_after": 2}
    with pytest.raises(NotEnoughData, match=r"the judge left them of 5 before judging"):
        cycle._check_enough(data, thinned)
    with pytest.raises(NotEnoughData) as raised:
        cycle._check_enough(data, {**thinned, "tickets_before": 2})
    assert "judge" not in str(raised.value), "too few before judging too: not the judge's doing"
