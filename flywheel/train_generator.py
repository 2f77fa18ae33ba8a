"""Train the drafting LLM from agents' preferences: ORPO (TRL) with a LoRA adapter (PEFT).

ORPO needs no reference model, so one copy of the base sits in memory; on a GPU the base is
loaded in 4 bits (QLoRA), on CPU it trains as plain float32 LoRA. The result is a PEFT adapter
that ``rag.llm_backends.HuggingFaceDrafter`` loads on top of the unchanged base.

Multi-GPU: ``train_generator`` is plain Hugging Face ``Trainer`` code (no hand-made device
placement), so a script that calls it runs data-parallel under
``accelerate launch --num_processes 4 my_train_script.py``.

Needs the ``train`` extra (trl, peft, datasets; bitsandbytes only on CUDA).
"""

from __future__ import annotations

import importlib.util
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel import exceptions
from flywheel.examples import PreferencePair, TrainedModel
from flywheel.weighting import copies
from rag.generation import chat_prompt


class GeneratorNotTrainable(exceptions.FlywheelError):
    """This generator cannot be trained here."""


@dataclass(frozen=True)
class GeneratorTraining:
    """Settings of one ORPO + LoRA run; the defaults suit a 0.5-8B model and a week of clicks."""

    epochs: float = 1.0
    batch_size: int = 2
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    beta: float = 0.1  # ORPO's lambda: weight of the odds-ratio term next to the NLL of `chosen`
    max_length: int = 512  # prompt + reply, in tokens
    max_prompt_length: int = 384  # longer prompts lose their beginning; the ask is at the end
    max_steps: int = -1  # > 0 overrides epochs
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: PEFT picks for the architecture
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0 < self.max_prompt_length < self.max_length:
            raise ValueError("max_prompt_length must be positive and below max_length")


def trainable(base_model: Path) -> str | None:
    """None when adapters can be trained on ``base_model`` here, else the reason they are
    not: a cycle then skips the generator with that line instead of failing the run."""
    if not Path(base_model).is_dir():
        return f"the drafting LLM's base {base_model} is not a local folder (AITL_HF_MODEL_PATH)"
    missing = [name for name in ("trl", "peft", "datasets") if not _installed(name)]
    if missing:
        return f"the 'train' extra is not installed (missing {', '.join(missing)})"
    return None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def train_generator(
    base_model: Path,
    pairs: Sequence[PreferencePair],
    out_dir: Path,
    config: GeneratorTraining = GeneratorTraining(),
    *,
    adapter: Path | None = None,
) -> TrainedModel:
    """ORPO with a LoRA adapter; writes the adapter (PEFT format, loadable with
    ``PeftModel.from_pretrained`` on the base) and the tokenizer into ``out_dir``.

    ``adapter`` (the champion's LoRA) is trained further instead of starting a fresh one; its
    own LoRA settings then win over ``config``'s. ORPO has no per-example weight, so weights
    decide how often a pair is repeated: see ``weighted_pairs``.
    """
    started = time.perf_counter()
    if not Path(base_model).is_dir():
        raise GeneratorNotTrainable(f"base model {base_model} is not a local folder")
    used = weighted_pairs(pairs, config.seed)
    if not used:
        raise exceptions.NotEnoughData("no preference pairs with a positive weight to train on")
    from transformers import set_seed

    from rag.decoding import check_adapter_base, mark_adapter_base

    if adapter is not None:
        check_adapter_base(adapter, Path(base_model))
    set_seed(config.seed)  # the fresh LoRA's random init
    model = _peft_model(Path(base_model), config, adapter)
    trainer = _trainer(model, _tokenizer(Path(base_model)), used, out_dir, config)
    result = trainer.train()
    trainer.save_model(str(out_dir))
    mark_adapter_base(out_dir, Path(base_model))
    return TrainedModel(
        kind="generator",
        path=str(out_dir),
        examples=len({id(pair) for pair in used}),
        steps=trainer.state.global_step,
        train_loss=_finite(result.training_loss),
        seconds=time.perf_counter() - started,
    )


def weighted_pairs(pairs: Sequence[PreferencePair], seed: int = 0) -> list[PreferencePair]:
    """Each pair repeated in proportion to its weight, keeping the data set's size: ORPO has
    no per-example weight (see ``flywheel.weighting``)."""
    counts = copies([pair.weight for pair in pairs], seed)
    return [pair for pair, n in zip(pairs, counts, strict=True) for _ in range(n)]


def _tokenizer(base_model: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
    if tokenizer.pad_token is None:  # Llama-style tokenizers ship none; the collator needs one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _peft_model(base_model: Path, config: GeneratorTraining, adapter: Path | None) -> Any:
    """The base with a trainable LoRA: the champion's adapter if given, else a fresh one."""
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError as exc:
        raise GeneratorNotTrainable("training the generator needs the 'train' extra") from exc
    model = _load_base(base_model)
    if adapter is not None:
        return PeftModel.from_pretrained(model, adapter, is_trainable=True, local_files_only=True)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules) if config.target_modules else None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _load_base(base_model: Path) -> Any:
    """float32 on CPU; on CUDA 4-bit NF4 (QLoRA), one copy per process for ``accelerate``."""
    import torch
    from transformers import AutoModelForCausalLM

    if not torch.cuda.is_available():
        return AutoModelForCausalLM.from_pretrained(
            base_model, dtype=torch.float32, local_files_only=True
        )
    from accelerate import PartialState
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    if not _installed("bitsandbytes"):
        raise GeneratorNotTrainable("4-bit training on CUDA needs bitsandbytes ('train' extra)")
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=_cuda_dtype(),
    )
    # a 4-bit model cannot be moved after loading, so each process loads onto its own GPU
    model = AutoModelForCausalLM.from_pretrained(
        base_model,
        quantization_config=quantization,
        device_map={"": PartialState().local_process_index},
        local_files_only=True,
    )
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)


def _cuda_dtype() -> Any:
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _trainer(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    out_dir: Path,
    config: GeneratorTraining,
) -> Any:
    """An ORPOTrainer on an already PEFT-wrapped model, so both start paths train alike."""
    try:
        import datasets
        from datasets import Dataset

        with warnings.catch_warnings():  # "experimental": ORPO's home in TRL 1.x, known
            warnings.simplefilter("ignore")
            from trl.experimental.orpo import ORPOTrainer
    except ImportError as exc:
        raise GeneratorNotTrainable("training the generator needs the 'train' extra") from exc
    datasets.disable_progress_bars()  # per-pair "Map" bars in the cycle's log say nothing
    rows = [
        {
            "prompt": _served_prompt(tokenizer, pair, config.max_prompt_length),
            "chosen": pair.chosen,
            "rejected": pair.rejected,
        }
        for pair in pairs
    ]
    return ORPOTrainer(
        model=model,
        args=_orpo_config(out_dir, config),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )


def _orpo_config(out_dir: Path, config: GeneratorTraining) -> Any:
    import torch
    from trl.experimental.orpo import ORPOConfig

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return ORPOConfig(
        output_dir=str(out_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        beta=config.beta,
        max_length=config.max_length,
        seed=config.seed,
        bf16=bf16,
        fp16=cuda and not bf16,
        gradient_checkpointing=cuda,  # saves GPU memory; on CPU it only costs time
        # TRL's ORPO zeroes every dropout by default, which would silently void lora_dropout
        disable_dropout=False,
        remove_unused_columns=False,
        report_to=[],
        logging_strategy="no",  # the cycle records loss and time itself
        push_to_hub=False,
        save_strategy="no",
        disable_tqdm=True,
    )


def _served_prompt(tokenizer: Any, pair: PreferencePair, max_tokens: int) -> str:
    """The prompt as the drafter lays it out (chat template, system message), its user
    message cut to fit; a pair without a system message is plain text, used as it is."""
    user = _prompt_tail(tokenizer, pair.prompt, max_tokens)
    return chat_prompt(tokenizer, pair.system, user) if pair.system else user


def _prompt_tail(tokenizer: Any, prompt: str, max_tokens: int) -> str:
    """The prompt cut to its last ``max_tokens`` tokens, as text.

    TRL 1.16's ORPO dropped ``max_prompt_length`` and only ever shortens the replies, so a long
    prompt would leave nothing to learn from. The end holds the ticket's ask and the cue to
    reply, so the beginning goes; cutting at a token's character offset keeps the text exact.
    """
    if not tokenizer.is_fast:  # no offsets: decoding is the best a slow tokenizer offers
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return prompt if len(ids) <= max_tokens else tokenizer.decode(ids[-max_tokens:])
    offsets = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    if len(offsets) <= max_tokens:
        return prompt
    return prompt[offsets[len(offsets) - max_tokens][0] :]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
