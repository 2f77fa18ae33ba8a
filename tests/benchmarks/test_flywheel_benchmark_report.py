"""The flywheel benchmark's report: several training seeds (judge on minus off per seed, their
mean and spread, the "judge beats no judge" goals read from the means), and the judge against
the simulation's truth, per rule (the counting, the goal's verdicts, the LLM's sample)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks import flywheel as bench
from flywheel.evaluation import METRICS
from flywheel.events import StoredFeedback
from flywheel.exceptions import FlywheelError
from flywheel.judge import RULES, JudgeContext, NoJudge, RuleJudge, RuleSettings, Verdict
from rag.store import DraftSetInfo, StoredDraft


def live(recall_on: float, recall_off: float) -> dict[str, dict[str, float]]:
    on = dict.fromkeys(METRICS, 0.2) | {"recall@75": recall_on}
    off = dict.fromkeys(METRICS, 0.1) | {"recall@75": recall_off}
    return {"rules": on, "off": off}


def test_the_judge_comparison_reads_the_mean_over_seeds_not_the_first_pair():
    pairs = {42: live(0.70, 0.72), 43: live(0.74, 0.71), 44: live(0.73, 0.72)}
    difference = bench.judge_difference(pairs)
    recall = difference["recall@75"]
    assert recall["per_seed"] == pytest.approx({"42": -0.02, "43": 0.03, "44": 0.01})
    assert recall["mean"] == pytest.approx(0.02 / 3) and recall["on_ahead"] == 2
    assert recall["sd"] == pytest.approx(0.02516611, abs=1e-6)
    assert recall["standard_error"] == pytest.approx(0.02516611 / 3**0.5, abs=1e-6)
    assert difference["precision@8"]["on_ahead"] == 3

    rows = [
        bench.ModelRow("base (shipped MiniLM)", "b", None, dict.fromkeys(METRICS, 0.1), 3),
        bench.ModelRow(bench.live_row("rules"), "r", None, pairs[42]["rules"], 3),
        bench.ModelRow(bench.live_row("off"), "o", None, pairs[42]["off"], 3),
    ]
    assert bench.live_by_judge(rows) == pairs[42]
    goals = bench.goals(rows, {"rules": _cycle()}, difference)
    found = goals["judge_beats_no_judge_recall@75"]
    assert found["pass"] and found["seeds"] == 3, "seed 42 alone would miss"
    assert found["measured"] == pytest.approx([0.7233333, 0.7166667])
    one = bench.goals(rows, {"rules": _cycle()}, bench.judge_difference({42: pairs[42]}))
    assert not one["judge_beats_no_judge_recall@75"]["pass"]
    assert one["judge_beats_no_judge_recall@75"]["seeds"] == 1
    assert one["judge_beats_no_judge_recall@75"]["standard_error"] is None
    shown = list(bench.goals_table(goals).columns[1].cells)
    assert "mean of 3 seeds: on 0.7233 vs off 0.7167 (gap +0.0067 ± 0.0145 s.e.)" in shown


def _cycle() -> bench.CycleFigures:
    return bench.CycleFigures("rules", 1, "succeeded", 10.0, 9.0)


@pytest.mark.parametrize("given", ["42,42", "a,b", "-1", ","])
def test_training_seeds_must_be_distinct_non_negative_integers(given, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--train-seeds", given])
    assert "--train-seeds" in capsys.readouterr().err


def test_training_seeds_default_to_the_products_seed():
    assert bench.parse_args([]).train_seeds is None
    assert bench.parse_args(["--train-seeds", "42, 43"]).train_seeds == [42, 43]


# --- the judge against the simulation's truth, per rule ------------------------------------

SHOWN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
GOLD = frozenset({1, 2})
CITED = {"A": [1, 3], "B": [3, 4]}  # A cites one gold chunk, B none


def click(eid, kind, value, *, chunk=None, set_id=7, after_s=30.0, agent="U1", **rationale):
    return StoredFeedback(
        eid,
        kind,
        value,
        "dstc11:val:dialogue:0",
        set_id,
        [71, 72],
        None,
        [chunk] if chunk else [],
        f"chunk:{chunk}" if chunk else "",
        agent,
        rationale,
        SHOWN,
        SHOWN + timedelta(seconds=after_s),
        None,
        f"k{eid}",
    )


def card(set_id=7, cited=CITED) -> DraftSetInfo:
    drafts = {
        label: StoredDraft(70 + i, set_id, label, f"draft {label}", list(chunks), {})
        for i, (label, chunks) in enumerate(sorted(cited.items()))
    }
    return DraftSetInfo(
        set_id, "dstc11:val:dialogue:0", "wifi at the guest house?", [], SHOWN, drafts
    )


def test_marks_are_right_or_wrong_by_gold_and_by_what_a_careful_agent_clicks():
    truth = bench.truth_of
    assert truth(click(1, "relevance", "relevant", chunk=1), GOLD, CITED) is True
    assert truth(click(2, "relevance", "relevant", chunk=3), GOLD, CITED) is False
    assert truth(click(3, "relevance", "not_relevant", chunk=3), GOLD, CITED) is True
    assert truth(click(4, "relevance", "not_relevant", chunk=2), GOLD, CITED) is False
    assert truth(click(5, "missing_knowledge", "article", chunk=2), GOLD, CITED) is True
    assert truth(click(6, "missing_knowledge", "article", chunk=5), GOLD, CITED) is False
    assert truth(click(7, "relevance", "relevant"), GOLD, CITED) is None  # names no chunk
    # A cites more gold: a careful agent prefers A and sends it as it is
    assert truth(click(8, "preference", "A"), GOLD, CITED) is True
    assert truth(click(9, "preference", "B"), GOLD, CITED) is False
    assert truth(click(10, "preference", "tie"), GOLD, CITED) is False
    assert truth(click(11, "adoption", "as_is", label="A"), GOLD, CITED) is True
    assert truth(click(12, "adoption", "as_is", label="B"), GOLD, CITED) is False
    assert (
        truth(click(13, "adoption", "not_used", reason="missing_knowledge"), GOLD, CITED) is False
    )
    # no draft cites gold: both bad, and unused for lack of knowledge
    none = frozenset({9})
    assert truth(click(14, "preference", "both_bad"), none, CITED) is True
    assert truth(click(15, "preference", "A"), none, CITED) is False
    assert truth(click(16, "adoption", "not_used", reason="missing_knowledge"), none, CITED) is True
    assert truth(click(17, "adoption", "as_is", label="A"), none, CITED) is False
    # equally good drafts: a tie, and the first is sent
    tie = {"A": [1], "B": [2]}
    assert truth(click(18, "preference", "tie"), GOLD, tie) is True
    assert truth(click(19, "adoption", "as_is", label="B"), GOLD, tie) is False
    assert truth(click(20, "adoption", "as_is", label="A"), GOLD, tie) is True


def test_each_rule_is_counted_on_its_own_and_the_judge_once_per_event():
    events = [
        click(1, "relevance", "relevant", chunk=3),  # wrong: doubted by two rules
        click(2, "relevance", "relevant", chunk=1),  # right: doubted by one
        click(3, "relevance", "not_relevant", chunk=4),  # right, kept
        click(4, "relevance", "not_relevant", chunk=2),  # wrong, kept
        click(5, "missing_knowledge", "article", chunk=2),  # right, doubted
        click(6, "preference", "A"),  # right, kept
        click(7, "relevance", "relevant", chunk=1, set_id=8),  # a card never annotated
    ]
    truths = bench.event_truths(events, {7: card(), 8: card(8)}, {7: GOLD})
    assert (
        7 not in truths
        and truths[1] == ("relevant", False)
        and truths[4]
        == (
            "not relevant",
            False,
        )
    )
    verdicts = [
        Verdict(1, False, "fast", "rules", ("too_fast", "unused_for_lack")),
        Verdict(2, False, "lack", "rules", ("unused_for_lack",)),
        Verdict(3, True, "consistent", "rules"),
        Verdict(4, True, "consistent", "rules"),
        Verdict(5, False, "shown", "rules", ("already_shown",)),
        Verdict(6, True, "consistent", "rules"),
    ]
    doubted = bench.doubted_by(verdicts, ["too_fast", "unused_for_lack", "off_topic"])
    assert doubted["off_topic"] == set() and doubted["already_shown"] == {5}
    assert doubted[bench.JUDGE_ROW] == {1, 2, 5}

    found = bench.against_truth(truths, doubted)
    fast, lack, judge = found["too_fast"], found["unused_for_lack"], found[bench.JUDGE_ROW]
    assert fast["relevant"] == {"wrong": 1, "wrong_dropped": 1, "right": 1, "right_dropped": 0}
    assert lack["relevant"] == {"wrong": 1, "wrong_dropped": 1, "right": 1, "right_dropped": 1}
    assert judge["not relevant"] == {"wrong": 1, "wrong_dropped": 0, "right": 1, "right_dropped": 0}
    assert judge[bench.RELEVANCE] == {
        "wrong": 2,
        "wrong_dropped": 1,
        "right": 2,
        "right_dropped": 1,
    }
    assert judge["missing knowledge"] == {
        "wrong": 0,
        "wrong_dropped": 0,
        "right": 1,
        "right_dropped": 1,
    }
    assert judge["preference"]["right"] == 1 and judge["adoption"]["right"] == 0
    assert found["off_topic"][bench.RELEVANCE]["wrong_dropped"] == 0

    tables = bench.rule_tables(found, "t")
    rules = list(tables[0].columns[0].cells)
    assert rules == [
        "too_fast",
        "unused_for_lack",
        "off_topic",
        "already_shown",
        "judge (any rule)",
    ]
    assert list(tables[0].columns[5].cells)[-1] == "1 (50.0%)"  # both values: wrong dropped


def test_real_rule_verdicts_name_every_rule_that_doubted():
    fast_and_lacking = click(1, "relevance", "relevant", chunk=3, after_s=0.5)
    lacking = click(2, "adoption", "not_used", after_s=30.0, reason="missing_knowledge")
    judge = RuleJudge()
    verdicts = judge.judge([fast_and_lacking, lacking], JudgeContext({7: card()}, {}))
    doubted = bench.doubted_by(verdicts, bench.rules_run(judge))
    assert set(doubted) == {*RULES, bench.JUDGE_ROW}
    assert doubted["too_fast"] == doubted["unused_for_lack"] == doubted[bench.JUDGE_ROW] == {1}
    ran = judge.ran([fast_and_lacking, lacking], JudgeContext({7: card()}, {}))
    truths = bench.event_truths([fast_and_lacking, lacking], {7: card()}, {7: GOLD})
    table = bench.rule_tables(bench.against_truth(truths, doubted), "t", ran)[0]
    rows = list(table.columns[0].cells)
    assert "off_topic (not run)" in rows and "too_fast" in rows  # nothing to calibrate on
    assert bench.rules_run(NoJudge()) == []
    assert "too_fast" not in bench.rules_run(
        RuleJudge(RuleSettings(disabled=frozenset({"too_fast"})))
    )


def _counts(wrong, wrong_dropped, right, right_dropped):
    return {
        "wrong": wrong,
        "wrong_dropped": wrong_dropped,
        "right": right,
        "right_dropped": right_dropped,
    }


def test_the_goal_needs_half_the_wrong_marks_dropped_and_at_most_five_percent_of_the_right():
    counts = {
        "relevant": _counts(100, 50, 100, 5),  # exactly at both bounds
        "not relevant": _counts(10, 4, 1000, 10),  # too few wrong ones dropped
        bench.RELEVANCE: _counts(110, 54, 1100, 15),
    }
    goals = bench.relevance_goals(counts)
    assert goals["relevant"]["pass"] is True
    assert goals["not relevant"]["pass"] is False and goals["not relevant"]["wrong_dropped"] == 0.4
    assert goals[bench.RELEVANCE]["pass"] is False  # 49.1% of the wrong ones
    too_many = bench.relevance_goals({**counts, bench.RELEVANCE: _counts(10, 9, 1000, 51)})
    assert too_many[bench.RELEVANCE]["pass"] is False  # 5.1% of the right ones
    assert too_many[bench.RELEVANCE]["right_dropped"] == 0.051
    clean = bench.relevance_goals({**counts, "relevant": _counts(0, 0, 100, 0)})
    assert clean["relevant"]["pass"] is None  # no wrong mark to drop: no verdict

    table = bench.judge_goal_table({"rules": goals, "off": clean}, "entity")
    verdicts = list(table.columns[4].cells)
    assert "PASS" in verdicts[1] and "MISS" in verdicts[0] and verdicts[4] == "n/a"


def test_the_llm_sample_takes_each_stratum_in_turn_and_is_seeded():
    truths = {i: ("relevant", False) for i in range(1, 4)}  # 3 wrong "relevant" marks
    truths |= {i: ("relevant", True) for i in range(10, 60)}
    truths |= {i: ("not relevant", True) for i in range(100, 200)}
    truths |= {i: ("preference", True) for i in range(300, 320)}
    truths |= {400: ("adoption", True)}
    sample = bench.stratified_sample(truths, 12, seed=5)
    assert sample == bench.stratified_sample(truths, 12, seed=5)
    assert sample != bench.stratified_sample(truths, 12, seed=6)
    relevance = sample["relevance"]
    assert len(relevance) == 12 and {1, 2, 3} <= set(relevance)  # the rare stratum in full
    assert sum(truths[i] == ("relevant", True) for i in relevance) == 4
    assert sum(truths[i][0] == "not relevant" for i in relevance) == 5
    assert len(sample["preference"]) == 12 and 400 not in sample["preference"]
    assert len(bench.stratified_sample(truths, 500, seed=5)["preference"]) == 20


def test_the_llm_is_scored_beside_the_rules_on_the_same_sampled_events():
    truths = {1: ("relevant", False), 2: ("relevant", True), 3: ("relevant", True)}
    truths[4] = ("preference", True)
    sample = {"relevance": [1, 2, 3], "preference": [4]}
    found = bench.llm_against_truth(
        sample, truths, llm_dropped={2}, answered={1, 2, 3}, rules_dropped={1}
    )
    relevance = found["relevance"]
    assert relevance["agreement"] == pytest.approx(
        {"llm": 1 / 3, "rules": 1.0, "llm + rules": 2 / 3}
    )
    assert relevance["strata"]["relevant, wrong"] == {
        "events": 1,
        "llm_answered": 1,
        "llm_dropped": 0,
        "rules_dropped": 1,
    }
    assert found["preference"]["llm_answered"] == 0
    assert found["preference"]["agreement"]["llm"] == 1.0


def test_judge_options_are_checked():
    args = bench.parse_args([])
    assert (args.layout, args.judges, args.llm_sample, args.judge_only) == (
        None,
        ["rules"],
        150,
        False,
    )
    args = bench.parse_args(["--judge-only", "--judges", "rules, off,llm", "--layout", "article"])
    assert args.judges == ["rules", "off", "llm"]
    assert bench.results_path(args, "article").name == "flywheel_judge_article.json"
    assert bench.results_path(bench.parse_args([]), "entity") == bench.RESULTS
    assert bench.results_path(bench.parse_args([]), "question").name == "flywheel_question.json"
    for bad in (["--judges", "rules,rules"], ["--judges", "gpt"], ["--llm-sample", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    with pytest.raises(SystemExit):
        bench.parse_args(["--layout", "faq"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--reuse"])  # needs the data dir to reuse
    assert bench.parse_args(["--reuse", "--data-dir", "/tmp/x"]).reuse


class FakeLLMJudge:
    """Drops every "relevant" mark, keeps the rest, leaves preferences unanswered."""

    name = "llm:fake"
    weighs_agents = True

    def __init__(self) -> None:
        self.seen: list[int] = []

    def judge(self, events, context):
        self.seen.extend(e.id for e in events)
        return [
            Verdict(
                e.id, e.value != "relevant", "fake", self.name, ("llm",) * (e.value == "relevant")
            )
            if e.kind == "relevance"
            else Verdict(e.id, True, "consistent", "rules")
            for e in events
        ]


def test_the_llm_reads_only_its_sample_and_is_skipped_when_it_cannot_be_built(monkeypatch):
    events = [click(i, "relevance", "relevant", chunk=1 if i % 2 else 3) for i in range(1, 9)]
    events += [click(i, "relevance", "not_relevant", chunk=4) for i in range(9, 13)]
    events += [click(20, "preference", "A"), click(21, "preference", "B")]
    truths = bench.event_truths(events, {7: card()}, {7: GOLD})
    rules_verdicts = [Verdict(e.id, e.id != 2, "r", "rules") for e in events]  # drops one right
    fake = FakeLLMJudge()
    built = []

    def default_judge(settings):
        built.append(settings)
        return fake

    monkeypatch.setattr(bench.cycle, "default_judge", default_judge)
    args = bench.parse_args(["--llm-sample", "3"])
    settings = bench.make_settings(Path("/tmp/unused"))
    found = bench.judge_llm_sample(
        settings, events, JudgeContext({}, {}), truths, rules_verdicts, args
    )

    assert built[0].judge == "llm" and set(built[0].judge_disabled_rules) == set(RULES)
    assert len(fake.seen) == 3 + 2 and {20, 21} <= set(fake.seen)
    relevance = found["against_truth"]["relevance"]
    assert relevance["events"] == 3 and relevance["llm_answered"] == 3
    strata = relevance["strata"]
    assert strata["relevant, right"]["llm_dropped"] == strata["relevant, right"]["events"] == 1
    assert strata["relevant, wrong"]["llm_dropped"] == 1
    assert strata["not relevant, right"]["llm_dropped"] == 0
    preference = found["against_truth"]["preference"]
    assert preference["llm_answered"] == 0 and preference["agreement"]["llm"] == 0.5

    def cannot(settings):
        raise FlywheelError("AITL_JUDGE=llm needs AITL_OPENAI_BASE_URL")

    monkeypatch.setattr(bench.cycle, "default_judge", cannot)
    skipped = bench.judge_llm_sample(settings, events, JudgeContext({}, {}), truths, [], args)
    assert skipped == {"skipped": "AITL_JUDGE=llm needs AITL_OPENAI_BASE_URL"}
