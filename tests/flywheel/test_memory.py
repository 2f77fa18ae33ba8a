"""The feedback memory on the real database with the sample knowledge base and real MiniLM:
what a refresh remembers (judged, current, live, public), and how similar tickets vote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aitl.core.bootstrap import open_database
from flywheel import store
from flywheel.events import Feedback
from flywheel.memory import FlywheelMemory, MemoryBuilder
from rag import factory
from rag import store as rag_store
from tests.conftest import make_settings
from tests.support.drafts import draft_set

NOW = datetime.now(UTC).replace(microsecond=0)
LOCKED = "My account is locked after too many wrong password attempts"
LOCKED_AGAIN = "I am locked out of my account, too many wrong passwords"
SIMILAR = "My account got locked because I typed the wrong password too many times"
DISSIMILAR = "Which bulbs fit the ceiling lamp in my kitchen?"


@pytest.fixture
def memory_db(kb_settings):
    db = open_database(kb_settings)
    yield kb_settings, db
    db.close()


def chunks_of(db, *external_ids: str) -> list[int]:
    with db.connection() as conn:
        found = conn.execute(
            "SELECT d.external_id, min(c.id) FROM kb_chunks c JOIN kb_documents d"
            " ON d.id = c.document_id WHERE c.retired_at IS NULL GROUP BY d.external_id"
        ).fetchall()
    ids = dict(found)
    return [next(v for k, v in ids.items() if name in k) for name in external_ids]


def drafted(db, query: str, ref: str) -> int:
    with db.connection() as conn:
        set_id, _ = draft_set(conn, ticket_ref=ref)
        conn.execute("UPDATE rag_draft_sets SET query = %s WHERE id = %s", (query, set_id))
    return set_id


def click(
    db,
    set_id: int,
    ref: str,
    chunk: int,
    value: str = "relevant",
    *,
    agent: str = "U1",
    at: datetime = NOW,
    seconds: float = 20.0,
):
    kind = "missing_knowledge" if value == "article" else "relevance"
    feedback = Feedback(
        kind=kind,
        value=value,
        draft_set_id=set_id,
        agent_id=agent,
        clicked_at=at,
        subject="missing" if kind == "missing_knowledge" else f"chunk:{chunk}",
        chunk_ids=(chunk,),
    )
    with db.connection() as conn:
        event, _ = store.record(
            conn, feedback, ticket_ref=ref, draft_ids=[], shown_at=at - timedelta(seconds=seconds)
        )
    return event


def entries(db) -> dict[int, tuple]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT event_id, kind, chunk_id, agent_id, version, brand FROM feedback_memory"
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def vector(settings, db, text: str):
    version, embedder = factory.embedding_versions(settings, db).live()
    return version.version, embedder.encode([text])[0]


def votes(settings, db, text: str, **kw):
    version, query = vector(settings, db, text)
    return {v.chunk_id: v for v in FlywheelMemory(settings, db).votes(query, version=version, **kw)}


def test_refresh_remembers_judged_current_marks_only(memory_db):
    settings, db = memory_db
    locked, reset, wifi = chunks_of(db, "account-locked", "reset-your-password", "wi-fi")
    one, two = drafted(db, LOCKED, "zendesk:1"), drafted(db, LOCKED_AGAIN, "zendesk:2")
    relevant = click(db, one, "zendesk:1", locked, agent="U1")
    missing = click(db, two, "zendesk:2", reset, "article", agent="U2")
    changed_mind = click(db, one, "zendesk:1", wifi, "relevant", agent="U2")
    too_fast = click(db, two, "zendesk:2", locked, agent="U3", seconds=0.1)
    builder = MemoryBuilder(settings, db, brands=lambda refs: {"zendesk:2": "7"})

    first = builder.refresh()
    held = entries(db)
    assert set(held) == {relevant.id, missing.id, changed_mind.id}
    assert first.added == 3 and first.dropped == 1, "the too-fast click is the judge's to drop"
    assert held[relevant.id][:3] == ("relevant", locked, "U1")
    assert held[missing.id][0] == "missing" and held[missing.id][4] == "7"
    assert too_fast.id not in held

    replaced = click(db, one, "zendesk:1", wifi, "not_relevant", agent="U2")
    second = builder.refresh()
    held = entries(db)
    assert changed_mind.id not in held, "a later click in the same slot replaces the earlier"
    assert held[replaced.id][:2] == ("not_relevant", wifi)
    assert (second.added, second.removed, second.entries) == (1, 1, 3)
    # an entry's vector is its draft set's query under the live version
    version, query = vector(settings, db, LOCKED)
    with db.connection() as conn:
        hit = store.nearest_memory(conn, version, query, limit=1)[0]
        last = store.last_memory_refresh(conn)
    assert hit.similarity == pytest.approx(1.0, abs=1e-4) and hit.ticket_ref == "zendesk:1"
    assert last is not None and last.entries == 3 and last.version == version


def test_an_adoption_that_contradicts_a_mark_drops_it_at_the_next_refresh(memory_db):
    """A rule that needs more of the batch (unused_for_lack): the mark counts on arrival, and
    leaves when the same agent says the card went unused for lack of knowledge."""
    settings, db = memory_db
    (locked,) = chunks_of(db, "account-locked")
    set_id = drafted(db, LOCKED, "zendesk:1")
    mark = click(db, set_id, "zendesk:1", locked)
    builder = MemoryBuilder(settings, db)
    builder.refresh()
    assert mark.id in entries(db)
    unused = Feedback(
        kind="adoption",
        value="not_used",
        draft_set_id=set_id,
        agent_id="U1",
        clicked_at=NOW,
        rationale={"reason": "missing_knowledge"},
    )
    with db.connection() as conn:
        store.record(
            conn, unused, ticket_ref="zendesk:1", draft_ids=[], shown_at=NOW - timedelta(minutes=1)
        )
    report = builder.refresh()
    assert mark.id not in entries(db) and report.removed == 1 and report.dropped == 1


def test_deleted_or_agent_only_documents_leave_the_memory(memory_db):
    settings, db = memory_db
    locked, reset, wifi = chunks_of(db, "account-locked", "reset-your-password", "wi-fi")
    set_id = drafted(db, LOCKED, "zendesk:1")
    for chunk in (locked, reset, wifi):
        click(db, set_id, "zendesk:1", chunk)
    builder = MemoryBuilder(settings, db)
    assert builder.refresh().entries == 3
    with db.connection() as conn:
        conn.execute(
            "UPDATE kb_documents SET audience = 'internal' WHERE id ="
            " (SELECT document_id FROM kb_chunks WHERE id = %s)",
            (reset,),
        )
        sources = conn.execute(
            "SELECT source, external_id FROM kb_documents d JOIN kb_chunks c"
            " ON c.document_id = d.id WHERE c.id = %s",
            (wifi,),
        ).fetchone()
        others = conn.execute(
            "SELECT external_id FROM kb_documents WHERE source = %s AND external_id <> %s",
            sources,
        ).fetchall()
        rag_store.soft_delete_missing(conn, sources[0], [r[0] for r in others])
    report = builder.refresh()
    assert [e[1] for e in entries(db).values()] == [locked]
    assert report.removed == 2


def test_a_new_live_version_rebuilds_the_memory(memory_db, minilm_path):
    settings, db = memory_db
    (locked,) = chunks_of(db, "account-locked")
    for n, (query, agent) in enumerate(((LOCKED, "U1"), (LOCKED_AGAIN, "U2"))):
        set_id = drafted(db, query, f"zendesk:{n}")
        click(db, set_id, f"zendesk:{n}", locked, agent=agent)
    builder = MemoryBuilder(settings, db)
    builder.refresh()
    old, query = vector(settings, db, SIMILAR)
    assert locked in votes(settings, db, SIMILAR)

    versions = factory.embedding_versions(settings, db)
    new = versions.build("memory_v2", str(minilm_path))
    versions.switch(new)
    memory = FlywheelMemory(settings, db)
    assert memory.votes(query, version=new) == [], "nothing is remembered under v2 yet"
    report = MemoryBuilder(settings, db).refresh()
    assert report.version == new and report.added == 2 and report.removed == 2
    assert {e[3] for e in entries(db).values()} == {new}
    assert memory.votes(query, version=old) == []
    assert [v.chunk_id for v in memory.votes(query, version=new)] == [locked]
    with db.connection() as conn:
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'feedback_memory'"
            )
        }
    assert store.memory_index_name(new) in indexes
    assert store.memory_index_name(old) not in indexes


def marked_by(db, settings, agents, value="relevant", *, chunk, at=NOW, refs=("1", "2")):
    """``chunk`` marked ``value`` on two similar tickets, by ``agents`` in turn."""
    for n, (ref, query) in enumerate(zip(refs, (LOCKED, LOCKED_AGAIN), strict=True)):
        set_id = drafted(db, query, f"zendesk:{ref}")
        click(db, set_id, f"zendesk:{ref}", chunk, value, agent=agents[n % len(agents)], at=at)


def test_two_agents_boost_a_similar_ticket_one_does_not(memory_db):
    settings, db = memory_db
    locked, reset = chunks_of(db, "account-locked", "reset-your-password")
    marked_by(db, settings, ["U1", "U2"], chunk=locked, refs=("1", "2"))
    marked_by(db, settings, ["U3"], chunk=reset, refs=("3", "4"))
    MemoryBuilder(settings, db).refresh()
    found = votes(settings, db, SIMILAR)
    assert set(found) == {locked}, "one agent alone cannot move a source for everyone"
    vote = found[locked]
    assert vote.agents == 2 and vote.tickets == 2 and len(vote.entries) == 2
    assert 2 * settings.memory_floor <= vote.score < 2
    # with one agent enough, U3 alone moves its source too
    lenient = make_settings(
        settings.database_url.get_secret_value(), settings.data_dir, memory_min_agents=1
    )
    assert set(votes(lenient, db, SIMILAR)) == {locked, reset}


def test_not_relevant_demotes_and_reliability_weighs(memory_db):
    settings, db = memory_db
    (wifi,) = chunks_of(db, "wi-fi")
    marked_by(db, settings, ["U1", "U2"], "not_relevant", chunk=wifi)
    MemoryBuilder(settings, db).refresh()
    plain = votes(settings, db, SIMILAR)[wifi]
    assert plain.score < 0
    with db.connection() as conn:
        run = store.start_run(conn, "test", NOW, {})
        conn.execute(
            "INSERT INTO agent_reliability (run_id, agent_id, events, weight)"
            " VALUES (%s, 'U1', 1, 0.5), (%s, 'U2', 1, 0.5)",
            (run, run),
        )
    weighed = votes(settings, db, SIMILAR)[wifi]
    assert weighed.score == pytest.approx(plain.score * 0.5, rel=1e-4)


def test_older_clicks_count_less(memory_db):
    settings, db = memory_db
    locked, reset = chunks_of(db, "account-locked", "reset-your-password")
    marked_by(db, settings, ["U1", "U2"], chunk=locked, refs=("1", "2"))
    two_half_lives = NOW - timedelta(days=2 * settings.memory_half_life_days)
    marked_by(db, settings, ["U1", "U2"], chunk=reset, at=two_half_lives, refs=("3", "4"))
    MemoryBuilder(settings, db).refresh()
    found = votes(settings, db, SIMILAR)
    assert found[reset].score == pytest.approx(found[locked].score / 4, rel=0.02)


def test_dissimilar_disabled_or_other_brand_gives_nothing(memory_db):
    settings, db = memory_db
    (locked,) = chunks_of(db, "account-locked")
    marked_by(db, settings, ["U1", "U2"], chunk=locked)
    MemoryBuilder(settings, db, brands=lambda refs: dict.fromkeys(refs, "7")).refresh()
    assert set(votes(settings, db, SIMILAR)) == {locked}
    assert set(votes(settings, db, SIMILAR, brand="7")) == {locked}
    assert votes(settings, db, SIMILAR, brand="8") == {}, "another brand's tickets stay out"
    assert votes(settings, db, DISSIMILAR) == {}, "below the similarity floor"
    off = make_settings(
        settings.database_url.get_secret_value(), settings.data_dir, memory_enabled=False
    )
    assert votes(off, db, SIMILAR) == {}


def test_the_queued_job_refreshes_and_the_scheduler_queues_it_once(memory_db):
    from aitl.app.cli.processes import _defer_once, job_crons
    from aitl.core.queue import build_deferrer
    from flywheel import jobs
    from tests.support.flywheel import run_flywheel_worker

    settings, db = memory_db
    (locked,) = chunks_of(db, "account-locked")
    set_id = drafted(db, LOCKED, "zendesk:1")
    mark = click(db, set_id, "zendesk:1", locked)
    assert job_crons(settings)["memory"] == settings.memory_refresh_cron == "*/2 * * * *"
    queue = build_deferrer(db.url)
    _defer_once(queue, f"{jobs.NAMESPACE}:memory")
    _defer_once(queue, f"{jobs.NAMESPACE}:memory")  # a tick while one waits adds none
    with db.connection() as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'flywheel:memory'"
        ).fetchone()[0]
    assert waiting == 1
    run_flywheel_worker(settings, db)
    assert mark.id in entries(db)


def test_the_cycle_counts_the_drafts_the_memory_moved(memory_db):
    from flywheel.memory import cycle_figures
    from flywheel.reports import memory_line

    settings, db = memory_db
    (locked,) = chunks_of(db, "account-locked")
    marked_by(db, settings, ["U1", "U2"], chunk=locked)
    MemoryBuilder(settings, db).refresh()
    with db.connection() as conn:
        moved, _ = draft_set(conn, ticket_ref="zendesk:9")
        conn.execute(
            "UPDATE rag_drafts SET producer = producer || %s::jsonb WHERE draft_set_id = %s",
            ('{"memory": {"ranked_up": [1]}}', moved),
        )
        figures = cycle_figures(conn, NOW - timedelta(days=1), datetime.now(UTC))
        earlier = cycle_figures(conn, None, NOW - timedelta(days=1))
    assert figures == {"entries": 2, "tickets": 2, "agents": 2, "drafts_moved": 1, "drafts": 3}
    assert earlier["drafts"] == 0
    assert memory_line({"memory": figures}) == (
        "memory: 2 clicks from 2 tickets; moved 1 of 3 drafts since the last cycle"
    )
