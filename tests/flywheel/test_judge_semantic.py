"""The judge's meaning check: a "relevant" mark is read against where its passage stood among
the card's passages, with a floor calibrated on the marks agents agreed on, and no rule
assumes what an article's title means."""

from __future__ import annotations

from flywheel.judge import JudgeContext, RuleJudge, RuleSettings, agreed_relevant, standing
from rag.store import ChunkRef, DraftSetInfo, StoredDraft
from tests.flywheel.test_flywheel_parts import SHOWN, event

QUESTION = "How do I reset my password?"


def card(set_id: int, similarity: dict[int, float], query: str = QUESTION) -> DraftSetInfo:
    """A card whose draft A cites the passage the retriever put first."""
    top = max(similarity, key=similarity.get)
    drafts = {
        "A": StoredDraft(10 * set_id + 1, set_id, "A", "Open Settings.", [top], {}),
        "B": StoredDraft(10 * set_id + 2, set_id, "B", "Contact us.", [], {}),
    }
    return DraftSetInfo(set_id, f"zendesk:{set_id}", query, [top], SHOWN, drafts, similarity)


def chunks() -> dict[int, ChunkRef]:
    """Question-titled Help Center articles: the ticket's words are the title's words."""
    titles = {
        1: ("How do I reset my password?", "Open Settings, then Security, then Reset."),
        2: ("How do I change my email address?", "Open Settings, then Profile."),
        3: ("How do I delete my account?", "Write to support to reset and delete it."),
        4: ("How do I reset my password?", "Use the link in the email we send you."),
    }
    return {
        c: ChunkRef(c, c, title, None, f"article-{c}", text) for c, (title, text) in titles.items()
    }


def team_window(cards: int = 6):
    """On each card, the agent used draft A (citing passage 1, first by far) and marked 1
    relevant: agreed marks. On the last card they also marked 3, ranked last, relevant."""
    sets, events, eid = {}, [], 0
    for s in range(1, cards + 1):
        sets[s] = card(s, {1: 0.80 + s / 100, 2: 0.40, 3: 0.20, 4: 0.55})
        eid += 1
        events.append(event(eid, "relevance", "relevant", set_id=s, chunk=1))
        eid += 1
        events.append(event(eid, "adoption", "as_is", set_id=s, label="A", reason="accurate"))
    eid += 1
    events.append(event(eid, "relevance", "relevant", set_id=cards, chunk=3))
    return JudgeContext(sets, chunks()), events, eid


def test_question_titled_passages_keep_their_right_marks():
    """The old overlap rule left out the title's words, so a ticket worded like its article's
    title shared nothing "left" and a right mark was dropped; no rule does that now."""
    ctx, events, _ = team_window()
    found = RuleJudge(RuleSettings(semantic_min_agreed=3)).judge(events, ctx)
    right = [v for v, e in zip(found, events, strict=True) if e.chunk_ids == [1]]
    assert right and all(v.keep for v in right)


def test_a_passage_far_below_the_agreed_marks_is_doubted_with_its_figures():
    ctx, events, last = team_window()
    judge = RuleJudge(RuleSettings(semantic_min_agreed=3))
    floor = judge.floor(events, ctx)
    assert floor is not None and floor.agreed == 6
    assert floor.standing == min(standing(ctx.sets[s].similarity, 1) for s in ctx.sets)
    verdict = {v.event_id: v for v in judge.judge(events, ctx)}[last]
    assert not verdict.keep and verdict.rules == ("off_topic",)
    assert "s.d. among the card's passages" in verdict.reason and "of 6 marks" in verdict.reason


def test_too_few_agreed_marks_and_the_rule_abstains():
    ctx, events, last = team_window(cards=2)
    judge = RuleJudge(RuleSettings(semantic_min_agreed=3))
    assert judge.floor(events, ctx) is None
    assert {v.event_id: v for v in judge.judge(events, ctx)}[last].keep


def test_a_disabled_rule_doubts_nothing():
    ctx, events, last = team_window()
    judge = RuleJudge(RuleSettings(semantic_min_agreed=3, disabled=frozenset({"off_topic"})))
    assert "off_topic" not in judge.doubts(events, ctx)
    assert {v.event_id: v for v in judge.judge(events, ctx)}[last].keep


def test_every_rule_that_doubts_an_event_is_named_in_order():
    """A mark both too fast and off topic counts under both rules; the reason is the first's."""
    ctx, events, last = team_window()
    events[-1] = event(last, "relevance", "relevant", set_id=6, chunk=3, after_s=0.3)
    verdict = RuleJudge(RuleSettings(semantic_min_agreed=3)).judge(events, ctx)[-1]
    assert verdict.rules == ("too_fast", "off_topic") and "0.3 s" in verdict.reason


def test_agreed_marks_are_backed_by_a_used_draft_or_a_second_agent():
    ctx, events, last = team_window(cards=1)
    events.append(event(last + 1, "relevance", "relevant", set_id=1, chunk=4, agent="U2"))
    events.append(event(last + 2, "relevance", "relevant", set_id=1, chunk=4, agent="U3"))
    events.append(event(last + 3, "relevance", "relevant", set_id=1, chunk=2, agent="U4"))
    agreed = {e.id for e in agreed_relevant(events, ctx)}
    # 1 (source of the draft used), 4 twice (two agents); 3 and 2 stand alone
    assert agreed == {1, last + 1, last + 2}


def test_standing_is_relative_to_the_card():
    assert standing({1: 0.9, 2: 0.5, 3: 0.1}, 1) > 1.0 > standing({1: 0.9, 2: 0.5, 3: 0.1}, 2)
    assert standing({1: 0.9, 2: 0.5}, 1) is None, "too few passages to stand among"
    assert standing({1: 0.5, 2: 0.5, 3: 0.5}, 1) is None
    assert standing({1: 0.9, 2: 0.5, 3: 0.1}, 7) is None


def test_the_product_runs_off_topic_only_when_asked_and_refuses_unknown_rules(tmp_path):
    import pytest

    from flywheel.cycle import default_judge
    from flywheel.exceptions import FlywheelError
    from tests.conftest import make_settings

    settings = make_settings("postgresql://unused/aitl", tmp_path)
    ctx, events, _ = team_window(cards=25)
    assert "off_topic" not in default_judge(settings).ran(events, ctx), "off by default"
    every = settings.model_copy(update={"judge_disabled_rules": []})
    assert "off_topic" in default_judge(every).ran(events, ctx)
    wrong = settings.model_copy(update={"judge_disabled_rules": ["off_topics"]})
    with pytest.raises(FlywheelError, match="names no such rule: off_topics"):
        default_judge(wrong)
