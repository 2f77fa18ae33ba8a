"""The drafting LLM in the weekly cycle: the challenger of the extractive champion, trained
from the clicks (capped), checked against the replies agents wrote, served in A/B."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aitl.core.queue import build_deferrer
from bot.recorder import FeedbackRecorder
from flywheel.cycle import Flywheel
from flywheel.feedback import Feedback
from flywheel.serving import LivePipeline
from rag import factory
from rag.models import Ticket
from tests.conftest import make_settings
from tests.support.flywheel import annotate_samples
from tests.support.tiny_models import build_tiny_causal_lm

pytestmark = pytest.mark.slow


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def edit_every_draft(db) -> int:
    """An agent rewrites draft A of every card: the reply a trained generator is scored on."""
    recorder = FeedbackRecorder(db, build_deferrer(db.url))
    [(first,)] = rows(db, "SELECT min(id) FROM rag_draft_sets")
    sets = rows(db, "SELECT id, created_at FROM rag_draft_sets ORDER BY id")
    for set_id, created in sets:
        reply = (
            f"Hi there,\n\nTap Forgot password on the sign-in screen, then open the newest"
            f" link within 60 minutes (ticket {set_id - first}).\n\nBest regards,\nThe Support Team"
        )
        recorder.record(
            Feedback(
                kind="adoption",
                value="edited",
                draft_set_id=set_id,
                agent_id="UEDITOR",
                clicked_at=max(created, datetime.now(UTC)) + timedelta(seconds=40),
                rationale={"reason": "accurate", "label": "A", "edited_reply": reply},
                source="simulated",
            ),
            label="A",
            refresh=False,
        )
    return len(sets)


def test_the_llm_challenger_trains_capped_and_is_checked_against_agents_replies(
    kb_settings, kb_db, tmp_path
):
    tiny = build_tiny_causal_lm(tmp_path / "tiny")
    settings = make_settings(
        kb_settings.database_url.get_secret_value(),
        tmp_path,
        llm_challenger=True,  # the extractive champion against the (tiny) LLM
        hf_model_path=tiny,
        hf_max_new_tokens=8,
        flywheel_holdout=0.25,
        flywheel_min_examples=4,
        flywheel_min_eval_queries=2,
        flywheel_max_seq_length=64,
        retriever_batch_size=8,
        gate_margin=1.0,  # keep the shipped retriever and reranker: this test is the generator's
        generator_max_pairs=6,
        generator_eval_tickets=3,
    )
    live = LivePipeline(settings, kb_db)
    first = live().draft(Ticket("Reset", "The reset email never arrives"))
    roles = {d.producer["role"]: d.producer["backend"] for d in first.drafts}
    assert roles == {"champion": "extractive", "challenger": "hf"}

    annotate_samples(settings, kb_db, variants=1, pipeline=live())
    edit_every_draft(kb_db)
    report = Flywheel(settings, kb_db).run("test")
    assert report.status == "succeeded", report.error

    generator = report.metrics["generator"]
    training = generator["training"]
    assert training["pairs"] == 6, "AITL_GENERATOR_MAX_PAIRS caps the pairs trained on"
    assert training["left_by_cap"] == report.counts["generator_pairs"] - 6 > 0
    assert training["seconds"] > 0 and training["pairs_per_s"] > 0
    assert training["from_adapter"] is None, "the first adapter starts fresh"
    for side in ("champion", "challenger"):  # the live LLM and the adapter, on 3 tickets
        scores = generator[side]
        assert scores["replies"] == 3
        assert all(0 <= scores[m] <= 1 for m in ("rouge_l", "faithfulness"))
        assert -1 <= scores["semantic"] <= 1
    decision = report.decisions["generator"]
    assert decision["reason"].startswith("semantic "), decision
    assert not decision["promoted"], "an LLM adapter cannot replace the extractive champion offline"
    [(status, metrics, baseline)] = rows(
        kb_db,
        "SELECT status, metrics, baseline FROM model_registry WHERE version = %s",
        decision["version"],
    )
    assert metrics == generator["challenger"] and baseline == generator["champion"]
    # the untrained LLM's A/B test runs on to its decision: the adapter waits its turn
    [(base_status,)] = rows(
        kb_db, "SELECT status FROM model_registry WHERE version = %s", factory.SHIPPED_LLM
    )
    assert base_status == "challenger"
    drafted = LivePipeline(settings, kb_db)().draft(Ticket("Hub", "My hub is offline"))
    generators = {d.producer["role"]: d.producer["generator"] for d in drafted.drafts}
    assert generators == {"champion": "extractive", "challenger": factory.SHIPPED_LLM}
    if status != "challenger":
        assert status == "rejected" and "rejected" in decision["reason"]

    # the next cycle goes on from the adapter drafts are served with
    report = Flywheel(settings, kb_db).run("test")
    assert report.status == "succeeded", report.error
    expected = decision["version"] if status == "challenger" else None
    assert report.metrics["generator"]["training"]["from_adapter"] == expected


def test_a_promoted_llm_adapter_drafts_as_champion_and_a_rollback_restores_extractive(
    kb_settings, kb_db, tmp_path
):
    from flywheel import store
    from flywheel.registry import Registry
    from rag import factory
    from tests.support.tiny_models import build_lora_adapter

    tiny = build_tiny_causal_lm(tmp_path / "tiny")
    adapter = build_lora_adapter(tiny, tmp_path / "models" / "generator" / "g1")
    settings = make_settings(
        kb_settings.database_url.get_secret_value(),
        tmp_path,
        llm_challenger=True,
        hf_model_path=tiny,
        hf_max_new_tokens=8,
    )
    with kb_db.connection() as conn:
        store.add_model(
            conn, kind="generator", version="g1", path=str(adapter), status="challenger"
        )
    ticket = Ticket("Hub", "My hub is offline")

    def served() -> dict[str, tuple]:
        drafts = LivePipeline(settings, kb_db, check_every_s=0)().draft(ticket).drafts
        return {
            d.label: (d.producer["role"], d.producer["backend"], d.producer.get("adapter"))
            for d in drafts
        }

    assert sorted(served().values()) == [
        ("challenger", "hf", "g1"),
        ("champion", "extractive", None),
    ]
    registry = Registry(kb_db, factory.embedding_versions(settings, kb_db))
    registry.promote("generator", "g1", "won the A/B")
    assert sorted(served().values()) == [("variant", "hf", "g1")] * 2, "the LLM drafts both"
    registry.rollback("generator", "drafts got worse")
    assert sorted(served().values()) == [
        ("challenger", "hf", None),  # g1 was rolled back: the untrained LLM is the challenger
        ("champion", "extractive", None),
    ]


def test_with_vllm_the_cycle_trains_on_local_base_weights_and_the_server_loads_the_adapter(
    kb_settings, kb_db, tmp_path
):
    from rag.lora_serving import forget_all
    from tests.support.fake_vllm import FakeVLLM

    tiny = build_tiny_causal_lm(tmp_path / "tiny")
    with FakeVLLM("served-base") as server:
        settings = make_settings(
            kb_settings.database_url.get_secret_value(),
            tmp_path,
            generator="openai",
            openai_base_url=server.base_url,
            openai_model="served-base",
            hf_model_path=tiny,  # the same base weights, here, for training
            flywheel_holdout=0.25,
            flywheel_min_examples=4,
            flywheel_max_seq_length=64,
            retriever_batch_size=8,
            gate_margin=1.0,
            generator_max_pairs=6,
        )
        # last week's drafts (the extractive drafter's two styles) give the preference pairs
        earlier = settings.model_copy(update={"generator": "extractive"})
        annotate_samples(earlier, kb_db, variants=1)
        report = Flywheel(settings, kb_db).run("test")
        assert report.status == "succeeded", report.error
        version = report.decisions["generator"]["version"]
        assert report.metrics["generator"]["training"]["pairs"] == 6

        forget_all()  # a fresh worker process
        drafted = LivePipeline(settings, kb_db, check_every_s=0)().draft(
            Ticket("Hub", "My hub is offline")
        )
        [load] = server.posts("/v1/load_lora_adapter")
        assert load["lora_name"] == version and load["lora_path"].endswith(version)
        models = {d.producer["role"]: d.producer["model"] for d in drafted.drafts}
        assert models == {"champion": "served-base", "challenger": version}
        assert {d.text for d in drafted.drafts} == {
            "drafted by served-base",
            f"drafted by {version}",
        }

    # without local base weights there is nothing to train, and the cycle says what to set
    remote = settings.model_copy(update={"hf_model_path": None})
    report = Flywheel(remote, kb_db).run("test")
    assert "AITL_HF_MODEL_PATH" in report.decisions["generator"]["reason"]
