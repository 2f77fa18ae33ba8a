"""The generator trainer: ORPO + LoRA on a tiny GPT-2 built on the spot, CPU only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from flywheel import exceptions
from flywheel.examples import PreferencePair, TrainedModel
from flywheel.train_generator import (
    GeneratorTraining,
    _prompt_tail,
    train_generator,
    trainable,
    weighted_pairs,
)
from tests.support.tiny_models import build_tiny_causal_lm

pytest.importorskip("trl")
pytest.importorskip("peft")

PASSWORD = "To reset your password tap Forgot password on the sign-in screen."
REFUND = "Refunds reach your card within five business days."
GREETING = "Hi there, thanks for getting in touch. Best regards, the support team."

# Every word is in the tiny tokenizer's vocabulary, so the model sees real tokens, not [UNK].
PASSWORD_ASKS = (
    "Forgot password",
    "reset password",
    "password sign in",
    "sign in screen password",
)
REFUND_ASKS = ("Refunds", "card", "Refunds to your card", "card business days")

# A random 1-layer model learns slowly: a high learning rate, beta 1 and LoRA on every linear
# layer lift the chosen replies by 0.45-0.6 nats per token in 60 steps (~1 s) for base seeds 0-4.
QUICK = GeneratorTraining(
    max_steps=60,
    batch_size=4,
    learning_rate=2e-2,
    beta=1.0,
    max_length=128,
    max_prompt_length=64,
    lora_dropout=0.0,
    target_modules=("c_attn", "c_proj", "c_fc"),
)
LIFT = 0.25  # nats per reply token


def prompt(ask: str) -> str:
    return f"Customer ticket\nSubject: {ask}\n\nWrite the reply now.\n"


def preference_pairs() -> list[PreferencePair]:
    password = [
        PreferencePair(prompt(a), PASSWORD, REFUND, event_ids=(i,))
        for i, a in enumerate(PASSWORD_ASKS)
    ]
    refund = [PreferencePair(prompt(a), REFUND, GREETING) for a in REFUND_ASKS]
    return password + refund


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("gen") / "base")


@pytest.fixture(scope="module")
def trained(base: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train_generator(base, preference_pairs(), tmp_path_factory.mktemp("gen") / "lora", QUICK)


def load(base: Path, adapter: Path | None = None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter, local_files_only=True)
    return model.eval()


def reply_logp(model, tokenizer, prompt_text: str, reply: str) -> float:
    """Mean log-probability per reply token, as ORPO scores a reply."""
    import torch

    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + reply_ids])
    with torch.no_grad():
        logps = model(ids).logits[0, :-1].log_softmax(-1)
    targets = ids[0, 1:]
    picked = logps.gather(-1, targets[:, None])[:, 0][len(prompt_ids) - 1 :]
    return picked.mean().item()


def preference_margin(model, tokenizer, pairs: Sequence[PreferencePair]) -> float:
    """How much more likely, on average, the chosen reply is than the rejected one."""
    margins = [
        reply_logp(model, tokenizer, p.prompt, p.chosen)
        - reply_logp(model, tokenizer, p.prompt, p.rejected)
        for p in pairs
    ]
    return sum(margins) / len(margins)


def lora_weights(model) -> dict[str, object]:
    return {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}


@pytest.mark.slow
def test_training_writes_a_loadable_adapter_that_changed(base: Path, trained: TrainedModel):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    out = Path(trained.path)
    assert trained.kind == "generator"
    assert trained.examples == len(preference_pairs())
    assert trained.steps == QUICK.max_steps
    assert trained.train_loss is not None
    assert (out / "adapter_config.json").is_file()
    assert (out / "tokenizer.json").is_file()

    learned = lora_weights(load(base, out))
    set_seed(QUICK.seed)
    fresh = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base, local_files_only=True),
        LoraConfig(
            r=QUICK.lora_r,
            lora_alpha=QUICK.lora_alpha,
            target_modules=list(QUICK.target_modules or ()),
            task_type="CAUSAL_LM",
        ),
    )
    initial = lora_weights(fresh)
    assert learned.keys() == initial.keys() and learned
    assert any(not torch.equal(learned[k], initial[k]) for k in learned)


@pytest.mark.slow
def test_training_raises_the_chosen_replies_over_the_rejected(base: Path, trained: TrainedModel):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    pairs = preference_pairs()
    before = preference_margin(load(base), tokenizer, pairs)
    after = preference_margin(load(base, Path(trained.path)), tokenizer, pairs)
    assert after > before + LIFT, (before, after)


@pytest.mark.slow
def test_training_continues_from_an_existing_adapter(
    base: Path, trained: TrainedModel, tmp_path: Path
):
    import torch

    # a short max_prompt_length also runs prompts through the cut to their last tokens
    config = GeneratorTraining(
        max_steps=3, batch_size=4, learning_rate=5e-3, max_length=128, max_prompt_length=8
    )
    pairs = preference_pairs()
    result = train_generator(base, pairs, tmp_path / "next", config, adapter=Path(trained.path))

    assert result.steps == 3
    champion = lora_weights(load(base, Path(trained.path)))
    challenger = lora_weights(load(base, tmp_path / "next"))
    assert challenger.keys() == champion.keys()
    assert any(not torch.equal(challenger[k], champion[k]) for k in champion)
    # it kept what the champion learned rather than starting over
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    before = preference_margin(load(base), tokenizer, pairs)
    assert preference_margin(load(base, tmp_path / "next"), tokenizer, pairs) > before + LIFT


def test_a_base_outside_a_local_folder_is_not_trainable_and_says_why(tmp_path: Path):
    assert trainable(tmp_path) is None
    reason = trainable(tmp_path / "missing") or ""
    assert "not a local folder" in reason and "AITL_HF_MODEL_PATH" in reason


def test_long_prompts_keep_their_end_verbatim(base: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    text = prompt("Forgot password")
    assert _prompt_tail(tokenizer, text, 100) == text
    assert _prompt_tail(tokenizer, text, 4) == "the reply now.\n"


def test_no_pairs_is_not_enough_data(base: Path, tmp_path: Path):
    with pytest.raises(exceptions.NotEnoughData):
        train_generator(base, [], tmp_path / "out", QUICK)
    zero = [PreferencePair(prompt("card"), REFUND, GREETING, weight=0.0)]
    with pytest.raises(exceptions.NotEnoughData):
        train_generator(base, zero, tmp_path / "out", QUICK)


def test_weights_decide_how_often_a_pair_is_seen():
    def pairs(count: int, weight: float) -> list[PreferencePair]:
        return [
            PreferencePair(prompt(str(i)), REFUND, GREETING, weight=weight) for i in range(count)
        ]

    same = pairs(5, 0.3)
    assert weighted_pairs(same) == same  # equal weights: each once, whatever the scale
    heavy, light, dropped = pairs(300, 1.0), pairs(300, 0.5), pairs(10, 0.0)
    used = weighted_pairs(heavy + light + dropped, seed=1)
    seen_heavy = sum(p.weight == 1.0 for p in used)
    seen_light = sum(p.weight == 0.5 for p in used)
    assert 1.7 < seen_heavy / seen_light < 2.3
    assert 550 < len(used) < 650
    assert not any(p.weight == 0.0 for p in used)
