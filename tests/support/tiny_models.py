"""Tiny models built from configs on the spot, so tests never download weights."""

from __future__ import annotations

from pathlib import Path

from aitl.core.settings import PROJECT_ROOT

SPECIAL_TOKENS = ["[UNK]", "[PAD]", "[EOS]"]


def build_tiny_causal_lm(folder: Path, *, seed: int = 0) -> Path:
    """A one-layer GPT-2 with a word-level tokenizer trained on the shipped prompts.

    The vocabulary covers the prompt files so the drafter's prompt is mostly known words.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = [
        p.read_text(encoding="utf-8") for p in sorted((PROJECT_ROOT / "prompts").glob("*.txt"))
    ]
    corpus += [
        "To reset your password tap Forgot password on the sign-in screen.",
        "Refunds reach your card within five business days.",
        "Hi there, thanks for getting in touch. Best regards, the support team.",
    ]
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="[EOS]",
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(fast),
        n_layer=1,
        n_head=2,
        n_embd=32,
        n_positions=512,
        bos_token_id=fast.eos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def build_lora_adapter(base: Path, folder: Path, *, seed: int = 0) -> Path:
    """A LoRA adapter on ``c_attn`` with random (non-zero) weights, so it changes the output.

    PEFT's default init leaves LoRA B at zero, which would make the adapter a no-op and a test
    unable to tell whether it was applied at all.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    torch.manual_seed(seed)
    config = LoraConfig(
        target_modules=["c_attn"],
        r=4,
        lora_alpha=64,
        init_lora_weights=False,
        fan_in_fan_out=True,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def build_cross_encoder(minilm: Path, folder: Path, *, seed: int = 0) -> Path:
    """A one-label cross-encoder: the shipped MiniLM body with a fresh (seeded) score head."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(seed)
    model = CrossEncoder(str(minilm), num_labels=1, device="cpu", local_files_only=True)
    model.save_pretrained(str(folder))
    return folder
