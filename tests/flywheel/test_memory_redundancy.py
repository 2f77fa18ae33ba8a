"""Whether the retrained models made the feedback memory redundant: how many of the memory's
moves on its own tickets the models make without it, on the real database with the sample
knowledge base and real MiniLM, in a real cycle, and as the CLI, the digest and the demo say it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from flywheel import store
from flywheel.cycle import CycleReport, Flywheel, live_evaluator, load_context
from flywheel.memory import MemoryBuilder, Ranking, memory_moves, moves_made, redundancy
from flywheel.reports import memory_line, redundancy_line
from rag import factory
from tests.conftest import make_settings
from tests.flywheel.test_flywheel import annotated, annotated_template  # noqa: F401 (fixtures)
from tests.flywheel.test_memory import (
    LOCKED,
    LOCKED_AGAIN,
    chunks_of,
    marked_by,
    memory_db,  # noqa: F401 (a fixture)
)
from tests.support.cli import flywheel_runs

FIGURES = {"entries": 58, "tickets": 20, "agents": 3, "drafts_moved": 7, "drafts": 40}


def standing(db):
    """The clicks and their draft sets, as the cycle hands them over."""
    with db.connection() as conn:
        events = store.standing_events(conn, datetime.now(UTC) + timedelta(minutes=1))
    return events, load_context(db, events).sets


def test_a_boost_the_model_already_makes_agrees_a_demotion_it_ignores_does_not(memory_db):  # noqa: F811
    settings, db = memory_db
    live = factory.embedding_versions(settings, db).live()
    model = str(live[1].path)
    evaluator, read = live_evaluator(db, live, [], depth=100)
    assert read > 0, "the live index's vectors are reused, not encoded again"
    context = [
        {chunk for chunk, _ in hits}
        for hits in evaluator.search(model, [LOCKED, LOCKED_AGAIN], settings.context_k)
    ]
    locked, wifi = chunks_of(db, "account-locked", "wi-fi")
    # what the live model already shows for both wordings, besides the right article
    (shown, *_) = sorted(set.intersection(*context) - {locked})
    assert all(locked in c and wifi not in c for c in context), "the premise of the test"

    marked_by(db, settings, ["U1", "U2"], chunk=locked, refs=("1", "2"))
    marked_by(db, settings, ["U3", "U4"], "not_relevant", chunk=shown, refs=("3", "4"))
    marked_by(db, settings, ["U5", "U6"], "not_relevant", chunk=wifi, refs=("5", "6"))
    assert MemoryBuilder(settings, db).refresh().dropped == 0
    events, sets = standing(db)

    queries, moves = memory_moves(settings, db, events, sets, live)
    # six similar tickets: each, coming again, gets the same three votes from all six
    assert len(queries) == 6
    assert sorted({(m.chunk_id, m.up) for m in moves}) == sorted(
        {(locked, True), (shown, False), (wifi, False)}
    )
    figures = redundancy(
        settings,
        db,
        events=events,
        sets=sets,
        live=live,
        evaluator=evaluator,
        before=Ranking(model),
    )
    # the boost it already makes (6) and the demotion of what it never shows (6) agree; the
    # demotion of what it still shows in the context (6) is the memory's own work
    assert figures["live"] == {"agree": 12, "of": 18}
    assert figures["tickets"] == 6 and "candidate" not in figures and "promoted" not in figures

    from flywheel.memory import tickets_evaluator

    found = tickets_evaluator(evaluator, queries, [model], settings)
    by_chunk = {
        chunk: moves_made(
            found, [m for m in moves if m.chunk_id == chunk], Ranking(model), settings
        )
        for chunk in (locked, shown, wifi)
    }
    assert by_chunk == {
        locked: {"agree": 6, "of": 6},
        shown: {"agree": 0, "of": 6},
        wifi: {"agree": 6, "of": 6},
    }
    assert redundancy_line({"memory": {**FIGURES, "redundant": figures}}) == (
        "nothing retrained; the live models make 12 of the memory's 18 moves alone"
    )


def test_the_latest_entries_are_measured_up_to_the_cap(memory_db):  # noqa: F811
    settings, db = memory_db
    live = factory.embedding_versions(settings, db).live()
    (locked,) = chunks_of(db, "account-locked")
    old = datetime.now(UTC) - timedelta(days=1)
    marked_by(db, settings, ["U1", "U2"], chunk=locked, refs=("1", "2"), at=old)
    marked_by(db, settings, ["U3", "U4"], chunk=locked, refs=("3", "4"))
    MemoryBuilder(settings, db).refresh()
    events, sets = standing(db)
    by_ref = {e.draft_set_id: e.ticket_ref for e in events}

    queries, moves = memory_moves(settings, db, events, sets, live, cap=2)
    assert sorted(by_ref[int(q.query_id.removeprefix("set:"))] for q in queries) == [
        "zendesk:3",
        "zendesk:4",
    ], "the two latest entries' tickets only"
    # a capped ticket is still voted on by every entry the memory holds, as a draft would be
    assert {m.chunk_id for m in moves} == {locked} and len(moves) == 2


@pytest.mark.slow
def test_a_cycle_reports_the_share_of_the_memorys_moves_the_models_make_alone(annotated):  # noqa: F811
    base, db, _ = annotated
    settings = base.model_copy(
        update={"gate_margin": -1.0, "gate_tolerance": 1.0, "flywheel_max_examples": 30}
    )
    remembered = MemoryBuilder(settings, db).refresh()
    assert remembered.entries > 0
    report = Flywheel(settings, db).run("test")
    assert report.status == "succeeded", report.error
    figures = report.counts["memory"]["redundant"]
    assert "error" not in figures, figures
    assert figures["cap"] == 2000 and 0 < figures["tickets"] <= remembered.entries
    live, candidate = figures["live"], figures["candidate"]
    assert live["of"] == candidate["of"] > 0, "the same moves, before and after"
    assert 0 <= live["agree"] <= live["of"] and 0 <= candidate["agree"] <= candidate["of"]
    assert candidate["kinds"] == ["reranker", "retriever"]
    assert figures["promoted"] is True and figures["promoted_kinds"] == ["reranker", "retriever"]
    # the figures are on the run's record, and said where the cycle's memory line is
    with db.connection() as conn:
        (run,) = store.runs(conn, 1)
    assert run.counts["memory"]["redundant"] == figures
    said = (
        f"the retrained models, now live, make {candidate['agree']} of the memory's"
        f" {live['of']} moves alone; the models before them made {live['agree']}"
    )
    assert memory_line(run.counts).endswith(f"since the last cycle; {said}")
    assert said in flywheel_runs(settings)


def test_a_failure_is_reported_and_never_fails_the_cycle(memory_db, monkeypatch):  # noqa: F811
    import flywheel.memory

    settings, db = memory_db
    live = factory.embedding_versions(settings, db).live()

    def broken(*args, **kwargs):
        raise RuntimeError("no vectors")

    monkeypatch.setattr(flywheel.memory, "redundancy", broken)
    report = CycleReport(1, "running", counts={"memory": dict(FIGURES)})
    prepared = SimpleNamespace(events=[], context=SimpleNamespace(sets={}))
    Flywheel(settings, db)._memory_redundancy(report, prepared, None, live)
    assert report.counts["memory"]["redundant"] == {"error": "RuntimeError: no vectors"}
    assert memory_line(report.counts).endswith(
        "; not measured whether the retrained models made the memory redundant:"
        " RuntimeError: no vectors"
    )
    # an empty memory, or one turned off, is not measured at all
    empty = CycleReport(2, "running", counts={"memory": {**FIGURES, "entries": 0}})
    Flywheel(settings, db)._memory_redundancy(empty, None, None, live)
    assert "redundant" not in empty.counts["memory"]


@pytest.mark.parametrize(
    ("figures", "said"),
    [
        (
            {
                "live": {"agree": 12, "of": 58},
                "candidate": {"agree": 41, "of": 58, "kinds": ["retriever"]},
                "promoted": True,
                "promoted_kinds": ["retriever"],
            },
            "the retrained models, now live, make 41 of the memory's 58 moves alone;"
            " the models before them made 12",
        ),
        (
            {
                "live": {"agree": 12, "of": 58},
                "candidate": {"agree": 20, "of": 58, "kinds": ["reranker", "retriever"]},
                "promoted": False,
                "promoted_kinds": [],
            },
            "the retrained models would make 20 of the memory's 58 moves alone, not promoted;"
            " the live ones make 12",
        ),
        (
            {
                "live": {"agree": 12, "of": 58},
                "candidate": {"agree": 30, "of": 58, "kinds": ["reranker", "retriever"]},
                "promoted": False,
                "promoted_kinds": ["retriever"],
            },
            "the retrained models would make 30 of the memory's 58 moves alone; only the"
            " retriever promoted, the reranker kept; the models before the cycle made 12",
        ),
        ({"live": {"agree": 0, "of": 0}}, "no move of the memory to compare the models with"),
    ],
)
def test_the_line_says_before_and_after_and_what_went_live(figures, said):
    counts = {"memory": {**FIGURES, "redundant": figures}}
    assert redundancy_line(counts) == said
    assert memory_line(counts) == (
        f"memory: 58 clicks from 20 tickets; moved 7 of 40 drafts since the last cycle; {said}"
    )
    assert " (" not in said, "the digest's summary cuts a line at its first bracket"


def test_runs_from_before_render_as_they_did_and_the_digest_shows_the_figure(
    database_url, db, tmp_path
):
    from bot.digest.views import digest_blocks
    from flywheel.digest.content import digest_of
    from flywheel.digest.metrics import week_of
    from flywheel.digest.render import render_markdown

    settings = make_settings(database_url, tmp_path, llm_challenger=False)
    old = {"memory": dict(FIGURES)}
    assert redundancy_line(old) == "" and redundancy_line({}) == "" and memory_line({}) == ""
    assert memory_line(old) == (
        "memory: 58 clicks from 20 tickets; moved 7 of 40 drafts since the last cycle"
    )
    figures = {
        "live": {"agree": 12, "of": 58},
        "candidate": {"agree": 41, "of": 58, "kinds": ["retriever"]},
        "promoted": True,
        "promoted_kinds": ["retriever"],
    }
    decisions = {"retriever": {"promoted": True, "reason": "recall@20 0.50 → 0.60"}}
    with db.connection() as conn:
        for counts in (old, {"memory": {**FIGURES, "redundant": figures}}):
            run_id = store.start_run(conn, "schedule", datetime.now(UTC), {})
            store.finish_run(
                conn, run_id, "succeeded", counts=counts, decisions=decisions, artefacts={}
            )
    text = flywheel_runs(settings)
    said = "now live, make 41 of the memory's 58 moves alone; the models before them made 12"
    assert text.count(said) == 1, "the newer run says it; the older one cannot"
    assert text.count("moved 7 of 40 drafts since the last cycle") == 2

    digest = digest_of(settings, db, week_of(datetime.now(UTC) + timedelta(days=7)))
    assert digest.retrain is not None and digest.retrain["run_id"] == run_id
    assert digest.retrain["lines"][-1] == memory_line({"memory": {**FIGURES, "redundant": figures}})
    assert said in render_markdown(digest).split("## Last retrain", 1)[1]
    summary = json.dumps([b.to_dict() for b in digest_blocks(digest)], ensure_ascii=False)
    assert said in summary, "whole in the Slack summary too"
