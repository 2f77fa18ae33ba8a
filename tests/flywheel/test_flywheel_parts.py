"""The flywheel's pure parts: the judge's rules, agents' reliability, the datasets and the
90/10 split by time, the gate, and how serving reads the registry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aitl.core.settings import PROJECT_ROOT
from flywheel.datasets import Datasets, build, newest, split_by_time
from flywheel.evaluation import EvalResult
from flywheel.events import StoredFeedback
from flywheel.examples import RetrievalExample
from flywheel.judge import JudgeContext, LLMJudge, NoJudge, RuleJudge
from flywheel.registry import GatePolicy, decide
from flywheel.reliability import estimate
from flywheel.serving import served
from flywheel.store import ModelRow
from rag.prompts import PromptLibrary
from rag.store import ChunkRef, DraftSetInfo, StoredDraft
from tests.conftest import make_settings

SHOWN = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PROMPTS = PromptLibrary(PROJECT_ROOT / "prompts")


def event(eid, kind, value, *, set_id=1, agent="U1", after_s=30.0, chunk=None, **rationale):
    return StoredFeedback(
        eid,
        kind,
        value,
        f"zendesk:{set_id}",
        set_id,
        [10 * set_id + 1, 10 * set_id + 2],
        None,
        [chunk] if chunk else [],
        f"chunk:{chunk}" if kind == "relevance" else "",
        agent,
        rationale,
        SHOWN + timedelta(minutes=set_id),
        SHOWN + timedelta(minutes=set_id, seconds=after_s),
        None,
        f"k{eid}",
    )


def context(n_sets=1) -> JudgeContext:
    sets = {
        s: DraftSetInfo(
            s,
            f"zendesk:{s}",
            "How do I reset the hub after changing my wifi router?",
            [100, 101],
            SHOWN,
            {
                "A": StoredDraft(10 * s + 1, s, "A", "Hold the reset button.", [100], {}),
                "B": StoredDraft(10 * s + 2, s, "B", "Unplug the hub.", [101], {}),
            },
        )
        for s in range(1, n_sets + 1)
    }
    chunks = {
        100: chunk(100, "Hold reset for ten seconds after a router change."),
        101: chunk(101, "Bulbs come in warm and cool white."),
        102: chunk(102, "Wifi setup: join the new router network."),
        103: ChunkRef(103, 103, "Billing", None, "doc-103", "Invoices go out monthly."),
    }
    return JudgeContext(sets, chunks)


def chunk(chunk_id: int, text: str) -> ChunkRef:
    return ChunkRef(chunk_id, chunk_id, "Lumen Hub", None, f"doc-{chunk_id}", text)


def verdicts(events, ctx=None):
    return {v.event_id: v for v in RuleJudge().judge(events, ctx or context())}


def test_rules_drop_contradictions_fast_clicks_unrelated_relevance_and_shown_missing():
    events = [
        event(1, "preference", "A"),
        event(2, "adoption", "as_is", label="B"),
        event(3, "preference", "B", agent="U2", after_s=1.0),
        event(4, "relevance", "relevant", chunk=103),
        event(5, "relevance", "relevant", chunk=100),
        event(6, "missing_knowledge", "article", chunk=100),
        event(7, "missing_knowledge", "article", chunk=102),
        event(8, "relevance", "not_relevant", chunk=102, after_s=1.5),
    ]
    found = verdicts(events)
    assert "preferred A but sent B" in found[1].reason and not found[1].keep
    assert not found[2].keep
    assert not found[3].keep and "1.0 s" in found[3].reason
    assert not found[4].keep and "no content word" in found[4].reason
    assert found[4].rules == ("no_shared_words",)
    assert found[1].rules == found[2].rules == ("preference_vs_sent",)
    assert found[3].rules == ("too_fast",) and found[6].rules == ("already_shown",)
    assert found[5].keep and found[5].rules == ()
    assert not found[6].keep and "among the ones shown" in found[6].reason
    assert found[7].keep and found[8].keep


def test_a_relevant_mark_on_a_card_unused_for_lack_of_knowledge_is_doubted():
    ctx = context(n_sets=2)
    events = [
        # U1 on card 1: 100 relevant, yet "not used: the knowledge was missing"
        event(1, "relevance", "relevant", chunk=100),
        event(2, "relevance", "not_relevant", chunk=101),
        event(3, "adoption", "not_used", reason="missing_knowledge"),
        # U2 on the same card did not say so: their mark stands
        event(4, "relevance", "relevant", chunk=100, agent="U2"),
        event(5, "adoption", "not_used", agent="U2", reason="generic"),
        # U1 on card 2 used a draft: their relevant mark stands
        event(6, "relevance", "relevant", chunk=100, set_id=2),
        event(7, "adoption", "edited", set_id=2, reason="tone"),
    ]
    found = verdicts(events, ctx)
    assert not found[1].keep and "knowledge was missing" in found[1].reason
    assert found[2].keep, "a not-relevant mark agrees with the missing knowledge"
    assert found[3].keep, "the considered answer is kept"
    assert found[4].keep and found[5].keep and found[6].keep and found[7].keep


def test_not_relevant_on_every_source_of_a_draft_sent_as_it_was_is_doubted():
    ctx = context(n_sets=3)
    ctx.sets[3].drafts["A"] = StoredDraft(
        31, 3, "A", "Hold reset; join the network.", [100, 102], {}
    )
    events = [
        # U1 on card 1 sent A, whose only source 100 they called not relevant
        event(1, "relevance", "not_relevant", chunk=100),
        event(2, "relevance", "not_relevant", chunk=101),
        event(3, "adoption", "as_is", label="A", reason="accurate"),
        # U2 on the same card edited A before sending: the draft's source may not have helped
        event(4, "relevance", "not_relevant", chunk=100, agent="U2"),
        event(5, "adoption", "edited", label="A", agent="U2", reason="tone"),
        # U1 on card 3 sent A citing 100 and 102, and called only 100 not relevant
        event(6, "relevance", "not_relevant", chunk=100, set_id=3),
        event(7, "relevance", "relevant", chunk=102, set_id=3),
        event(8, "adoption", "as_is", label="A", set_id=3, reason="accurate"),
        # U3 on card 3 called both of A's sources not relevant, then sent A
        event(9, "relevance", "not_relevant", chunk=100, set_id=3, agent="U3"),
        event(10, "relevance", "not_relevant", chunk=102, set_id=3, agent="U3"),
        event(11, "adoption", "as_is", label="A", set_id=3, agent="U3", reason="accurate"),
    ]
    found = verdicts(events, ctx)
    assert not found[1].keep and "sent draft A" in found[1].reason
    assert found[2].keep, "101 is B's source, which was not sent"
    assert found[3].keep, "the considered answer is kept"
    assert found[4].keep and found[5].keep
    assert found[6].keep and found[7].keep, "102 may have held the answer"
    assert not found[9].keep and not found[10].keep and found[11].keep, "a tie: both doubted"


def test_of_a_sent_drafts_sources_all_called_not_relevant_the_one_it_came_from_is_doubted():
    ctx = context(n_sets=1)
    ctx.sets[1].drafts["A"] = StoredDraft(
        11, 1, "A", "Hold the reset button for ten seconds after a router change.", [100, 102], {}
    )
    events = [
        event(1, "relevance", "not_relevant", chunk=100),
        event(2, "relevance", "not_relevant", chunk=102),
        event(3, "adoption", "as_is", label="A", reason="accurate"),
    ]
    found = verdicts(events, ctx)
    assert not found[1].keep and found[1].rules == ("not_relevant_yet_sent",)
    assert "whose words came from this passage" in found[1].reason
    assert found[2].keep, "the draft's words are not 102's: that mark may be right"


def test_without_a_judge_everything_is_kept_and_the_llm_judge_reads_json():
    events = [event(1, "relevance", "relevant", chunk=100), event(2, "preference", "A")]
    assert all(v.keep for v in NoJudge().judge(events, context()))
    asked = []

    def chat(system, user):
        asked.append(user)
        return 'Sure: {"keep": false, "reason": "the passage is about bulbs"}'

    judged = LLMJudge(chat, PROMPTS.text, "m").judge(events, context())
    assert [v.keep for v in judged] == [False, False] and judged[0].judge == "llm:m"
    assert "Hold reset for ten seconds" in asked[0] and "Draft A:" in asked[1]
    garbled = LLMJudge(lambda s, u: "no idea", PROMPTS.text).judge(events, context())
    assert [v.judge for v in garbled] == ["rules", "rules"], "an unreadable answer keeps the rules"


def test_reliability_follows_the_judge_and_the_peers():
    events = [
        event(1, "relevance", "relevant", agent="U1", chunk=100),
        event(2, "relevance", "relevant", agent="U2", chunk=100),
        event(3, "relevance", "not_relevant", agent="U3", chunk=100),
        event(4, "preference", "A", agent="U3", after_s=0.5),
        event(5, "relevance", "relevant", agent="U4", chunk=100),
    ]
    agents = estimate(events, RuleJudge().judge(events, context()))
    assert agents["U1"].peer_agreement == 1.0 and agents["U3"].peer_agreement == 0.0
    assert agents["U3"].judge_agreement == 0.5
    assert agents["U1"].weight == 1.5 and agents["U3"].weight == 0.5


def test_the_split_is_by_time_and_keeps_a_ticket_on_one_side():
    events = [event(i, "preference", "A", set_id=i) for i in range(1, 11)]
    events.append(event(99, "relevance", "relevant", set_id=10, chunk=100))
    train, held = split_by_time(events, 0.1)
    assert held == {"zendesk:10"} and len(train) == 9


def test_datasets_from_kept_events():
    ctx = context(n_sets=4)
    events = []
    for s in range(1, 5):
        events += [
            event(10 * s + 1, "relevance", "relevant", set_id=s, chunk=100),
            event(10 * s + 2, "relevance", "not_relevant", set_id=s, chunk=101),
            event(10 * s + 3, "missing_knowledge", "article", set_id=s, chunk=102),
            event(10 * s + 4, "preference", "A", set_id=s),
            event(10 * s + 5, "missing_knowledge", "note", set_id=s, note="the router FAQ"),
        ]
    events.append(
        event(99, "adoption", "edited", set_id=1, label="B", edited_reply="Hi! Unplug it.")
    )
    data = build(events, ctx, {"U1": 1.2}, PROMPTS, holdout=0.25)
    assert (data.train_tickets, data.eval_tickets) == (3, 1)
    assert len(data.retriever) == 6  # (relevant + missing article) × 3 tickets
    first = data.retriever[0]
    assert first.negatives == ("Lumen Hub\nBulbs come in warm and cool white.",)
    assert first.weight == 1.2 and first.positive.startswith("Lumen Hub\n")
    assert sorted(e.label for e in data.reranker) == [0.0] * 3 + [1.0] * 6
    chosen = {(p.chosen, p.rejected) for p in data.generator}
    assert ("Hold the reset button.", "Unplug the hub.") in chosen
    assert ("Hi! Unplug it.", "Unplug the hub.") in chosen
    assert "Hold reset for ten seconds" in data.generator[0].prompt, "the prompt has the context"
    [held] = data.eval_queries
    assert held.relevant == frozenset({100, 102})
    assert len(data.gaps) == 4 and all(g.value == "note" for g in data.gaps)


def result(**metrics) -> EvalResult:
    return EvalResult(metrics, "recall@20", True, 10)


def test_the_gate_needs_a_real_gain_and_no_regression():
    policy = GatePolicy(margin=0.01, tolerance=0.02)
    champion = result(**{"recall@20": 0.60, "precision@5": 0.30})
    assert decide(champion, result(**{"recall@20": 0.65, "precision@5": 0.29}), policy).promote
    small = decide(champion, result(**{"recall@20": 0.605, "precision@5": 0.40}), policy)
    assert not small.promote and "needs +0.0100" in small.reason
    worse = decide(champion, result(**{"recall@20": 0.70, "precision@5": 0.20}), policy)
    assert not worse.promote and "precision@5 fell" in worse.reason


def row(kind, version, status, path) -> ModelRow:
    return ModelRow(1, kind, version, path, status, None, None, {}, {}, None, SHOWN, None, None)


def test_serving_uses_champions_and_the_newest_generator_challenger(tmp_path):
    settings = make_settings("postgresql://x/y", tmp_path, generator="hf", hf_model_path=tmp_path)
    rows = [
        row("reranker", "r1", "champion", "/m/reranker/r1"),
        row("generator", "g1", "champion", "/m/generator/g1"),
        row("generator", "g2", "challenger", "/m/generator/g2"),
        row("retriever", "x", "rejected", "/m/retriever/x"),
    ]
    rows[2] = replace(rows[2], id=2)
    choice = served(settings, rows)
    assert choice.settings.reranker_model == "/m/reranker/r1"
    assert (choice.champion.version, choice.challenger.version) == ("g1", "g2")
    assert not choice.llm_challenger


def test_the_untrained_llm_is_the_challenger_of_the_extractive_drafter(tmp_path):
    settings = make_settings("postgresql://x/y", tmp_path, llm_challenger=True)
    assert served(settings, []).llm_challenger
    # a trained adapter takes its place, and a promoted one becomes the champion
    rows = [row("generator", "g1", "challenger", "/m/generator/g1")]
    choice = served(settings, rows)
    assert choice.challenger.version == "g1" and not choice.llm_challenger
    # without an LLM, registry generators are not served: the extractive drafter drafts both
    off = served(settings.model_copy(update={"llm_challenger": False}), rows)
    assert off.challenger is None and off.champion is None and not off.llm_challenger


def test_the_cap_keeps_the_newest_examples_in_their_order():
    examples = [
        RetrievalExample(f"set:{i}", "q", i, "p", event_ids=(eid,))
        for i, eid in enumerate([5, 1, 9, 3, 7])
    ]
    assert [e.positive_id for e in newest(examples, 3)] == [0, 2, 4]
    assert newest(examples, 10) == examples
    data, left = Datasets(retriever=examples).capped(2)
    assert [e.event_ids for e in data.retriever] == [(9,), (7,)]
    assert left == {"retriever_pairs": 3}


def sent(eid, value, label, *, set_id=1, body="Hi, hold the reset button for ten seconds."):
    """The reply an agent sent in Zendesk, as the connector hands it to the flywheel."""
    reply = event(eid, "adoption", value, set_id=set_id, agent="zendesk:7", after_s=600)
    rationale = {"label": label, "sent_reply": body, "similarity": {}}
    return replace(reply, subject="sent_reply", rationale=rationale)


def test_the_reply_sent_contradicts_an_adoption_click_and_the_click_is_dropped():
    events = [
        event(1, "adoption", "as_is", set_id=1, label="A"),  # the reply sent is closest to B
        sent(2, "edited", "B", set_id=1),
        event(3, "adoption", "not_used", set_id=2),  # yet draft A went out as it was
        sent(4, "as_is", "A", set_id=2),
        event(5, "adoption", "edited", set_id=3, label="A"),  # consistent: kept
        sent(6, "edited", "A", set_id=3),
        event(7, "adoption", "as_is", set_id=4, label="B", agent="U2"),  # used neither
        sent(8, "not_used", "A", set_id=4),
    ]
    found = verdicts(events, context(n_sets=4))
    assert found[1].reason == "said draft A was used, but the reply sent is closest to B"
    assert found[3].reason == "said no draft was used, but the reply sent is draft A as it was"
    assert found[7].reason == "said draft B was used, but the reply sent used neither draft"
    assert found[5].keep and all(found[i].keep for i in (2, 4, 6, 8)), "the replies stand"


def test_every_adoption_signal_gives_its_preference_pair():
    """Used as is: that draft over the other. The reply sent: it over the draft it was
    compared with (as is: that draft over the other). Not used or both bad: no pair."""
    events = [
        event(1, "adoption", "as_is", set_id=1, label="B"),
        sent(2, "edited", "A", set_id=2, body="Call me on +1 415 555 0100: hold reset."),
        sent(3, "as_is", "A", set_id=3),
        event(4, "adoption", "not_used", set_id=4),
        event(5, "preference", "both_bad", set_id=4),
    ]
    data = build(events, context(n_sets=4), {}, PROMPTS, holdout=0.0)
    pairs = {(p.chosen, p.rejected) for p in [*data.generator, *data.eval_pairs]}
    assert pairs == {
        ("Unplug the hub.", "Hold the reset button."),
        ("Call me on [PHONE]: hold reset.", "Hold the reset button."),
        ("Hold the reset button.", "Unplug the hub."),
    }
