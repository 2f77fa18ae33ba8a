"""The flywheel on the real database with the sample knowledge base: clicks from simulated
agents (through the Slack recorder), judged, trained on MiniLM, evaluated, gated, promoted
or refused, rolled back; and what happens with no data, a crash and two runs at once."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from aitl.core.leader import Leadership
from flywheel import store as flywheel_store
from flywheel.cycle import RUN_LOCK, Flywheel
from flywheel.exceptions import CycleFailed, RunInProgress
from flywheel.serving import LivePipeline
from rag import factory
from rag import store as rag_store
from rag.chunking import embedding_text
from sandboxes.agents.policy import AgentPolicy
from tests.conftest import clone_database, drop_database, make_settings
from tests.support.flywheel import annotate_samples, telling_worker

pytestmark = pytest.mark.slow


def flywheel_settings(kb_settings, tmp_path: Path, **overrides):
    url = kb_settings.database_url.get_secret_value()
    return flywheel_settings_for(url, tmp_path, **overrides)


@pytest.fixture(scope="module")
def annotated_template(pg_server_url, samples_template_url, tmp_path_factory):
    """The sample KB with every sample ticket drafted, shown and annotated, made once."""
    from aitl.core.bootstrap import open_database

    url = clone_database(pg_server_url, samples_template_url)
    settings = make_settings(url, tmp_path_factory.mktemp("annotated"))
    db = open_database(settings)
    try:
        events = annotate_samples(
            settings, db, variants=2, policy=AgentPolicy(noise=0.0, careless_share=0.2)
        )
    finally:
        db.close()
    yield url, events
    drop_database(pg_server_url, url)


@pytest.fixture
def annotated(pg_server_url, annotated_template, tmp_path):
    """A fresh copy of the annotated database: (settings, db, events stored)."""
    from aitl.core.bootstrap import open_database

    template, events = annotated_template
    url = clone_database(pg_server_url, template)
    settings = flywheel_settings_for(url, tmp_path)
    db = open_database(settings)
    yield settings, db, events
    db.close()
    drop_database(pg_server_url, url)


def flywheel_settings_for(url: str, tmp_path: Path, **overrides):
    values = dict(
        flywheel_holdout=0.25,
        flywheel_min_eval_queries=3,
        flywheel_min_examples=8,
        retriever_batch_size=8,
        flywheel_max_seq_length=64,  # enough to learn from; keeps CPU training quick
        judge_min_read_s=3.0,
    )
    values.update(overrides)
    return make_settings(url, tmp_path, **values)


def live_index(db) -> str:
    from rag import store as rag_store

    with db.connection() as conn:
        return rag_store.live_version(conn).version


def store_events(db):
    with db.connection() as conn:
        return flywheel_store.events(conn)


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def test_an_empty_window_says_not_enough_data(kb_settings, kb_db, tmp_path):
    report = Flywheel(flywheel_settings(kb_settings, tmp_path), kb_db).run("test")
    assert report.status == "not_enough_data" and "no feedback events" in report.error
    [(status, error)] = rows(kb_db, "SELECT status, error FROM flywheel_runs")
    assert status == "not_enough_data" and error == report.error


def test_a_tiny_window_says_what_it_lacks(kb_settings, kb_db, tmp_path):
    settings = flywheel_settings(kb_settings, tmp_path)
    annotate_samples(settings, kb_db, variants=1)  # 12 tickets: 3 held out
    report = Flywheel(settings.model_copy(update={"flywheel_min_eval_queries": 10}), kb_db).run()
    assert report.status == "not_enough_data"
    assert "held-out tickets" in report.error and report.counts["eval_queries"] == 3
    assert rows(kb_db, "SELECT count(*) FROM model_registry") == [(0,)]


def test_a_cycle_judges_trains_evaluates_and_promotes_through_the_gate(annotated):
    base, kb_db, events = annotated
    settings = base.model_copy(
        update={"gate_margin": -1.0, "gate_tolerance": 1.0, "flywheel_max_examples": 30}
    )
    before_index = live_index(kb_db)
    report = Flywheel(settings, kb_db).run("test")
    assert report.status == "succeeded", report.error
    assert report.counts["events"] == events
    # the per-cycle cap keeps the newest examples and says how many it left
    assert report.counts["retriever_pairs"] == report.counts["reranker_examples"] == 30
    assert report.counts["over_cap"]["reranker_examples"] > 0
    # beside the labelled examples, negatives mined from the retriever's top results, capped
    # like them
    assert 0 < report.counts["reranker_mined_negatives"] <= 30
    judge = report.counts["judge"]
    assert judge["generator"]["filtered"] > 0, "careless clicks are too fast to count"
    verdicts = rows(kb_db, "SELECT count(*), count(*) FILTER (WHERE NOT keep) FROM judge_verdicts")
    assert verdicts[0][0] == events and verdicts[0][1] > 0
    with kb_db.connection() as conn:
        filtered = flywheel_store.filtered_event_ids(conn, report.run_id)
    assert len(filtered) == verdicts[0][1] and filtered <= {e.id for e in store_events(kb_db)}
    [(config, stored)] = rows(kb_db, "SELECT config, decisions FROM flywheel_runs")
    # the gate reads the metrics at the drafts' depths (AITL_RETRIEVE_K=20, AITL_CONTEXT_K=5)
    assert config["gate"]["retriever"] == ["recall@20", "ndcg@5", "mrr@10"]
    assert config["gate"]["reranker"] == ["precision@5", "ndcg@5", "mrr@10"]
    for kind in ("retriever", "reranker"):
        metrics = report.metrics[kind]
        assert set(metrics["champion"]) >= {"recall@75", "precision@8", "mrr@10", "ndcg@10"}
        assert set(metrics["champion"]) >= {"recall@20", "precision@5", "ndcg@5"}
        assert report.decisions[kind]["promoted"] is True  # the gate was told to accept
        # which metric decided, and those skipped at their ceiling, are on the run's record
        decision = stored[kind]
        assert decision["metric"] in config["gate"][kind]
        assert decision["metric"] not in decision["at_ceiling"]
        assert decision == report.decisions[kind]
    assert "extractive" in report.decisions["generator"]["reason"]
    champions = {
        r.kind: r for r in factory_registry(settings, kb_db).list() if r.status == "champion"
    }
    assert set(champions) == {"retriever", "reranker"}
    assert live_index(kb_db) == champions["retriever"].embedding_version != before_index
    # the new index reused the evaluation's vectors: they are the trained model's own
    assert_index_matches_model(kb_db, champions["retriever"])
    assert Path(champions["reranker"].path, "config.json").exists()

    # the next drafts use the promoted reranker
    pipeline = LivePipeline(settings, kb_db)()
    assert champions["reranker"].path in pipeline.reranker.name

    # and a rollback puts the shipped models back
    registry = factory_registry(settings, kb_db)
    assert registry.rollback("retriever") is None and live_index(kb_db) == before_index
    assert registry.rollback("reranker") is None
    assert "cosine" in LivePipeline(settings, kb_db, check_every_s=0)().reranker.name.lower()
    statuses = rows(kb_db, "SELECT kind, status FROM model_registry ORDER BY kind")
    assert statuses == [("reranker", "retired"), ("retriever", "retired")]


def assert_index_matches_model(db, champion) -> None:
    from sentence_transformers import SentenceTransformer

    with db.connection() as conn:
        chunks = conn.execute(
            "SELECT c.id, d.title, c.text FROM kb_chunks c JOIN kb_documents d"
            " ON d.id = c.document_id WHERE c.retired_at IS NULL ORDER BY c.id"
        ).fetchall()
        stored = rag_store.stored_embeddings(
            conn, champion.embedding_version, [c[0] for c in chunks]
        )
    assert len(stored) == len(chunks)
    sample = chunks[:: max(1, len(chunks) // 20)]
    model = SentenceTransformer(champion.path, device="cpu", local_files_only=True)
    fresh = model.encode([embedding_text(t, x) for _, t, x in sample], normalize_embeddings=True)
    for (chunk_id, _, _), vector in zip(sample, fresh, strict=True):
        assert float(stored[chunk_id] @ vector) > 0.999


def factory_registry(settings, db):
    from flywheel.registry import Registry

    return Registry(db, factory.embedding_versions(settings, db))


def test_admins_who_hear_only_of_changes_hear_of_a_promotion_not_of_a_refusal(annotated):
    """AITL_FLYWHEEL_ADMIN_NOTES=changes, cycles run by the worker: one the gate refuses pings
    nobody; one it lets through tells every admin what went live."""
    from aitl.core.queue import build_deferrer
    from flywheel import jobs

    base, kb_db, _ = annotated
    queue = build_deferrer(kb_db.url)

    def cycle(**gate) -> list[tuple[str, str]]:
        settings = base.model_copy(
            update={"flywheel_admin_notes": "changes", "flywheel_max_examples": 30, **gate}
        )
        assert jobs.defer_cycle(queue, "schedule")
        return telling_worker(settings, kb_db)()

    assert cycle(gate_margin=1.0) == []
    [(status, decisions)] = rows(kb_db, "SELECT status, decisions FROM flywheel_runs")
    assert status == "succeeded" and not any(d["promoted"] for d in decisions.values())

    told = cycle(gate_margin=-1.0, gate_tolerance=1.0)
    assert [user for user, _ in told] == ["UADMIN", "UOTHER"]
    lines = told[0][1].splitlines()
    assert "2 models promoted" in lines[0]
    assert {line.split(":")[0] for line in lines[1:]} >= {"• retriever", "• reranker"}


def test_the_gate_refuses_a_challenger_that_does_not_beat_the_champion(annotated):
    base, kb_db, _ = annotated
    settings = base.model_copy(update={"gate_margin": 1.0})
    before_index = live_index(kb_db)
    report = Flywheel(settings, kb_db).run("test")
    assert report.status == "succeeded"
    for kind in ("retriever", "reranker"):
        decision = report.decisions[kind]
        assert decision["promoted"] is False and "needs +1.0000" in decision["reason"]
    assert live_index(kb_db) == before_index
    assert rows(kb_db, "SELECT DISTINCT status FROM model_registry") == [("rejected",)]
    stored = rows(kb_db, "SELECT decision FROM model_registry WHERE kind = 'retriever'")
    assert "needs +1.0000" in stored[0][0]


def test_a_crash_mid_run_changes_nothing_live_and_the_next_run_starts_clean(annotated, monkeypatch):
    base, kb_db, _ = annotated
    settings = base.model_copy(update={"gate_margin": -1.0, "gate_tolerance": 1.0})
    before_index = live_index(kb_db)

    def crash(*args, **kwargs):
        raise RuntimeError("killed while training the reranker")

    monkeypatch.setattr("flywheel.train_retrieval.train_reranker", crash)
    monkeypatch.setattr("flywheel.cycle.Registry.promote", _refuse_promotion)
    with pytest.raises(CycleFailed) as failed:
        Flywheel(settings, kb_db).run("test")
    [(run_id, status, error)] = rows(kb_db, "SELECT id, status, error FROM flywheel_runs")
    assert status == "failed" and "killed while training" in error
    # what an operator or an admin reads names the run and says what broke
    assert failed.value.run_id == run_id and failed.value.error == error
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert str(failed.value) == f"flywheel run {run_id} failed, nothing live changed: {error}"
    assert live_index(kb_db) == before_index
    assert rows(kb_db, "SELECT count(*) FROM model_registry WHERE status = 'champion'") == [(0,)]

    # a process killed outright leaves its run 'running'; the next cycle closes it
    with kb_db.connection() as conn:
        conn.execute("UPDATE flywheel_runs SET status = 'running', error = NULL")
    monkeypatch.undo()
    report = Flywheel(settings, kb_db).run("test")
    assert report.status == "succeeded"
    first = rows(kb_db, "SELECT status, error FROM flywheel_runs ORDER BY id")[0]
    assert first == ("failed", "abandoned: the process running it stopped")


def test_the_retriever_trains_from_the_model_whose_vectors_the_evaluation_read(
    annotated, monkeypatch
):
    """A promotion landing mid-cycle (App Home, another host) must not pair one version's
    chunk vectors with another version's model: the cycle looks the live model up once."""
    settings, kb_db, _ = annotated
    flywheel = Flywheel(settings.model_copy(update={"flywheel_seed": 7}), kb_db)
    lookup = flywheel.versions.live_or_bootstrap
    read, trained_from = [], []

    def lookup_then_promote_elsewhere():
        version, embedder = lookup()
        read.append(str(embedder.path))
        # every later lookup sees a different live model, as after a promotion
        monkeypatch.setattr(flywheel.versions, "live_or_bootstrap", lambda: (version, _Elsewhere()))
        return version, embedder

    def record_and_stop(base, examples, out, config):
        trained_from.append(str(base))
        assert config.seed == 7, "AITL_FLYWHEEL_SEED reaches the trainer"
        raise RuntimeError("stop after the training base is known")

    monkeypatch.setattr(flywheel.versions, "live_or_bootstrap", lookup_then_promote_elsewhere)
    monkeypatch.setattr("flywheel.train_retrieval.train_retriever", record_and_stop)
    with pytest.raises(CycleFailed, match="training base"):
        flywheel.run("test")
    assert read and trained_from == read[:1]
    [(config,)] = rows(kb_db, "SELECT config FROM flywheel_runs")
    assert config["seed"] == 7


class _Elsewhere:
    path = Path("/models/retriever/promoted-mid-cycle")


def _refuse_promotion(self, kind, version, reason):
    raise AssertionError("nothing may be promoted in a failed run")


def test_only_one_cycle_runs_at_a_time(kb_settings, kb_db, tmp_path):
    holder = Leadership(kb_db.url, RUN_LOCK)
    assert holder.try_acquire()
    try:
        with pytest.raises(RunInProgress):
            Flywheel(flywheel_settings(kb_settings, tmp_path), kb_db).run("test")
    finally:
        holder.release()
    assert rows(kb_db, "SELECT count(*) FROM flywheel_runs") == [(0,)]


def test_two_schedulers_one_leads(kb_db):
    first, second = Leadership(kb_db.url), Leadership(kb_db.url)
    results = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(s.try_acquire()))
        for s in (first, second)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    first.release()
    second.release()


def test_export_writes_the_judged_datasets(annotated, tmp_path):
    import json

    from flywheel.export import export_datasets

    settings, kb_db, _ = annotated
    counts = export_datasets(settings, kb_db, tmp_path / "export")
    assert counts["retriever.jsonl"] > 0 and counts["reranker.jsonl"] > 0
    first = json.loads((tmp_path / "export" / "retriever.jsonl").read_text().splitlines()[0])
    assert {"anchor", "positive", "weight"} <= set(first)
    label = json.loads((tmp_path / "export" / "reranker.jsonl").read_text().splitlines()[0])
    assert label["label"] in (0.0, 1.0)
    assert counts["generator.jsonl"] > 0
    pair = json.loads((tmp_path / "export" / "generator.jsonl").read_text().splitlines()[0])
    assert {"prompt", "chosen", "rejected"} <= set(pair) and pair["chosen"] != pair["rejected"]


def test_export_adds_the_reranker_negatives_mined_from_the_live_retriever(annotated, tmp_path):
    import json

    from flywheel.export import export_datasets
    from rag import factory
    from rag.chunking import embedding_text
    from rag.retrieve import Retriever

    settings, kb_db, _ = annotated
    counts = export_datasets(settings, kb_db, tmp_path / "export")

    def read(name):
        lines = (tmp_path / "export" / name).read_text().splitlines()
        return [json.loads(line) for line in lines]

    labelled, mined = read("reranker.jsonl"), read("reranker_mined.jsonl")
    assert counts["reranker_mined.jsonl"] == len(mined) > 0
    assert {row["label"] for row in mined} == {0.0}
    tickets = {row["query"] for row in labelled}
    assert {row["query"] for row in mined} <= tickets
    per_ticket = Counter(row["query"] for row in mined)
    assert max(per_ticket.values()) <= settings.reranker_mined_negatives
    seen = {(row["query"], row["passage"]) for row in labelled}
    assert not seen & {(row["query"], row["passage"]) for row in mined}, "no labelled chunk"
    retriever = Retriever(kb_db, factory.embedding_versions(settings, kb_db), ef_search=100)
    for query in per_ticket:
        top = [
            embedding_text(c.title, c.text)
            for c in retriever.search(query, settings.retrieve_k, exact=True)
        ]
        fresh = [text for text in top if (query, text) not in seen]
        expected = fresh[: settings.reranker_mined_negatives]
        assert [row["passage"] for row in mined if row["query"] == query] == expected

    off = settings.model_copy(update={"reranker_mined_negatives": 0})
    assert export_datasets(off, kb_db, tmp_path / "off")["reranker_mined.jsonl"] == 0


def test_the_judge_weights_examples_by_reliability_and_no_judge_does_not(annotated):
    from datetime import UTC, datetime

    from flywheel.cycle import default_judge, prepare

    settings, kb_db, _ = annotated
    now = datetime.now(UTC)
    judged = prepare(settings, kb_db, default_judge(settings), now)
    trust = {round(a.weight, 4) for a in judged.agents.values()}
    assert any(w != 1.0 for w in trust), "careless clicks lower some agent's reliability"
    assert {round(e.weight, 4) for e in judged.data.retriever} <= trust
    raw = prepare(
        settings.model_copy(update={"judge": "off"}),
        kb_db,
        default_judge(settings.model_copy(update={"judge": "off"})),
        now,
    )
    assert raw.agents, "reliability is still reported without a judge"
    assert {e.weight for e in raw.data.retriever + raw.data.reranker} == {1.0}


def test_a_rule_far_above_its_history_is_said_and_the_clicks_judged_without_it(annotated):
    """A fifth of the cards are clicked through unread, so too_fast drops about a fifth of the
    preferences; against three cycles where it dropped 1%, that is unusual: with skip (the
    default) the cycle judges again without it and says so, with warn it only says so."""
    from datetime import UTC, datetime

    from flywheel.cycle import CycleReport

    settings, kb_db, _ = annotated
    now = datetime.now(UTC)
    quiet = {
        "kinds": {"preference": 100, "adoption": 100, "relevance": 100},
        "dropped": {"too_fast": {"preference": 1, "adoption": 1, "relevance": 1}},
    }
    with kb_db.connection() as conn:
        for _ in range(3):
            run_id = flywheel_store.start_run(conn, "test", now, {})
            counts = {"judge_rules": quiet}
            flywheel_store.finish_run(conn, run_id, "succeeded", counts=counts)
        runs = [flywheel_store.start_run(conn, "test", now, {}) for _ in range(2)]

    report = CycleReport(runs[0], "running")
    prepared, watch = Flywheel(settings, kb_db)._judged(report, now)
    assert "too_fast" in watch.skipped and {u.rule for u in watch.unusual} == {"too_fast"}
    assert watch.dropped["too_fast"]["preference"] > 0, "the figure is the rule's own measure"
    assert not any("too_fast" in v.rules for v in prepared.verdicts)
    [said] = report.warnings
    assert "too_fast dropped" in said and "against a median of 1%" in said
    assert "judged the clicks without too_fast" in said
    evidence = prepared.evidence
    assert evidence["tickets_before"] >= evidence["tickets_after"] > 0
    assert evidence["marks_before"] >= evidence["marks_after"] and evidence["needed"] == 3

    warn = Flywheel(settings.model_copy(update={"judge_unusual_rule": "warn"}), kb_db)
    report = CycleReport(runs[1], "running")
    prepared, watch = warn._judged(report, now)
    assert watch.skipped == [] and watch.unusual and "still used it" in report.warnings[0]
    assert any("too_fast" in v.rules and not v.keep for v in prepared.verdicts)
