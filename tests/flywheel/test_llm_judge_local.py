"""AITL_JUDGE=llm without an endpoint: the LLM judge asks the local LLM (AITL_HF_MODEL_PATH,
else the shipped SmolLM2) on this machine, offline; an answer it cannot read leaves the rules'
verdict, one it can read is the verdict. Tiny models built from configs stand in for SmolLM2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from flywheel.cycle import default_judge
from flywheel.judge import LLM_RULE, LLMJudge, RuleJudge, _parse, _question
from rag.exceptions import GenerationError, ModelNotFound
from rag.llm_backends import LocalChat
from tests.conftest import make_settings
from tests.flywheel.test_flywheel_parts import PROMPTS, context, event
from tests.support.tiny_models import build_tiny_causal_lm


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def says_drop(tiny_lm: Path, tmp_path_factory) -> Path:
    """The tiny LM rewired to answer "drop" to anything, greedy: its final layer norm gives a
    constant state, and an untied output layer scores only the token "drop" on it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm, local_files_only=True)
    drop = tokenizer.convert_tokens_to_ids("drop")
    assert drop != tokenizer.unk_token_id, "the tiny vocabulary comes from the judge prompts"
    model.config.tie_word_embeddings = False
    size = model.config.n_embd
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        head = torch.nn.Linear(size, model.config.vocab_size, bias=False)
        head.weight.zero_()
        head.weight[drop] = 1.0
    model.lm_head = head
    folder = tmp_path_factory.mktemp("says-drop")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def local_settings(monkeypatch, tmp_path: Path, model: Path, **overrides):
    monkeypatch.setenv("AITL_HF_MODEL_PATH", str(model))
    monkeypatch.delenv("AITL_OPENAI_BASE_URL", raising=False)
    return make_settings(None, tmp_path, judge="llm", **overrides)


def events():
    return [
        event(1, "relevance", "relevant", chunk=100),
        event(2, "preference", "A"),
        event(3, "relevance", "not_relevant", chunk=101),
        event(4, "relevance", "relevant", chunk=102, after_s=0.2),  # too fast: dropped unasked
        event(5, "adoption", "as_is", label="A"),  # not a kind the LLM is asked about
    ]


def test_without_an_endpoint_the_judge_asks_the_local_model_and_garbage_leaves_the_rules(
    monkeypatch, tmp_path, tiny_lm
):
    settings = local_settings(monkeypatch, tmp_path, tiny_lm, torch_threads=2)
    judge = default_judge(settings)
    assert isinstance(judge, LLMJudge) and isinstance(judge.chat, LocalChat)
    assert judge.name == f"llm:local:{tiny_lm.name}" and judge.chat.model_path == tiny_lm
    assert judge.chat.max_new_tokens == settings.judge_llm_max_new_tokens
    assert judge.chat.threads == 2

    ctx = context()
    batch = events()
    # the random tiny model answers something, and nothing a verdict can be read from
    question = _question(batch[0], ctx)
    answer = judge.chat(
        PROMPTS.text("judge_system.txt"), PROMPTS.text("judge_relevance.txt").format(**question)
    )
    assert answer.strip()
    with pytest.raises(ValueError):
        _parse(answer)

    threads = torch.get_num_threads()
    judged = judge.judge(batch, ctx)
    assert torch.get_num_threads() == threads, "the judge's threads are its own"
    assert judged == RuleJudge(judge.rules.settings).judge(batch, ctx)
    assert [v.keep for v in judged] == [True, True, True, False, True]
    assert {v.judge for v in judged} == {"rules"}
    loaded = judge.chat._loaded
    assert judge.without(["too_fast"]).chat._loaded is loaded, "loaded once per judge"


def test_a_readable_local_answer_is_the_verdict(monkeypatch, tmp_path, says_drop):
    judge = default_judge(local_settings(monkeypatch, tmp_path, says_drop))
    assert judge.chat("You judge.", "Was the agent right?").split()[0] == "drop"
    judged = {v.event_id: v for v in judge.judge(events(), context())}
    name = f"llm:local:{says_drop.name}"
    for asked in (1, 2, 3):
        verdict = judged[asked]
        assert not verdict.keep and verdict.judge == name and verdict.rules == (LLM_RULE,)
    assert judged[4].judge == "rules" and judged[4].rules == ("too_fast",), "not asked"
    assert judged[5].judge == "rules" and judged[5].keep, "adoption clicks are not asked"


def test_a_question_longer_than_the_local_context_leaves_the_rules(monkeypatch, tmp_path, tiny_lm):
    judge = default_judge(local_settings(monkeypatch, tmp_path, tiny_lm))
    ctx = context()
    long = "reset the hub after changing my wifi router " * 120  # past the 512-token context
    ctx.sets[1] = dataclasses.replace(ctx.sets[1], query=long)
    with pytest.raises(GenerationError, match="512-token context"):
        judge.chat("You judge.", long)
    [verdict] = judge.judge([event(1, "relevance", "relevant", chunk=100)], ctx)
    assert verdict.keep and verdict.judge == "rules"


def test_a_missing_local_model_is_named_when_the_judge_is_built(monkeypatch, tmp_path):
    with pytest.raises(ModelNotFound, match="AITL_HF_MODEL_PATH"):
        default_judge(local_settings(monkeypatch, tmp_path, tmp_path / "no-such-model"))


def test_with_an_endpoint_the_judge_asks_it_and_loads_no_local_model(monkeypatch, tmp_path):
    # the local model path is missing: building the local chat would raise
    monkeypatch.setenv("AITL_HF_MODEL_PATH", str(tmp_path / "no-such-model"))
    settings = make_settings(
        None, tmp_path, judge="llm", openai_base_url="http://127.0.0.1:9/v1", openai_model="m7"
    )
    judge = default_judge(settings)
    assert isinstance(judge, LLMJudge) and judge.name == "llm:m7"
    assert not isinstance(judge.chat, LocalChat)


@pytest.mark.parametrize(
    ("answer", "keep", "reason"),
    [
        ("drop - the passage is about parking", False, "the passage is about parking"),
        ("Keep.", True, "no reason given"),
        ("keep - the passage explains the reset", True, "the passage explains the reset"),
        (
            "**Drop**: the agent marked a billing article",
            False,
            "the agent marked a billing article",
        ),
        ('"keep" \u2014 sound', True, "sound"),
        (
            "Answer: drop\nThe passage is about bulbs.\nMore text.",
            False,
            "The passage is about bulbs",
        ),
        ("KEEP\n\nthe hub article answers it", True, "the hub article answers it"),
        ('{"keep": false, "reason": "off topic"}', False, "off topic"),
        ('Sure: {"keep": true, "reason": "sound"}', True, "sound"),
    ],
)
def test_parse_reads_a_verdict_word_or_json(answer, keep, reason):
    assert _parse(answer) == {"keep": keep, "reason": reason}


@pytest.mark.parametrize(
    "answer",
    [
        "The agent's judgement is not sound.",  # what SmolLM2-135M answers
        "No.",
        "The agent should keep.",
        "keeping it",
        "keep or drop: drop",  # the question echoed
        "Keep/drop",
        '{"keep": "yes"}',
        '{"keep": tru',
        '["keep"]',
        "on on on on",
        "",
    ],
)
def test_parse_refuses_anything_else(answer):
    with pytest.raises(ValueError):
        _parse(answer)
