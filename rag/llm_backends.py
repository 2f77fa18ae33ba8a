"""LLM drafters behind the same Runnable contract as the extractive one.

``openai`` talks to any OpenAI-compatible endpoint (vLLM, Ollama, TGI) through langchain-openai;
``hf`` runs a local transformers model, optionally with a LoRA adapter trained by the flywheel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig

from rag import exceptions
from rag.embedding import local_model_dir
from rag.generation import (
    DraftInput,
    GeneratedDraft,
    chat_prompt,
    cited_passages,
    greeting,
    llm_messages,
    without_sign_off,
)
from rag.prompts import PromptLibrary


class OpenAIDrafter(Runnable[DraftInput, GeneratedDraft]):
    """Chat completion against an OpenAI-compatible base URL."""

    def __init__(
        self,
        prompts: PromptLibrary,
        *,
        base_url: str | None,
        api_key: str,
        model: str,
        timeout_s: float,
        max_tokens: int,
    ) -> None:
        if not base_url:
            raise exceptions.GeneratorMisconfigured(
                "AITL_GENERATOR=openai needs AITL_OPENAI_BASE_URL (e.g. http://localhost:8000/v1)"
            )
        from langchain_openai import ChatOpenAI

        self.prompts = prompts
        self.model_name = model
        self.base_url = base_url
        self._chat = ChatOpenAI(
            base_url=base_url,
            api_key=api_key,
            model=model,
            timeout=timeout_s,
            max_retries=2,
            max_tokens=max_tokens,
        )
        self._template = ChatPromptTemplate.from_messages(
            [("system", "{system}"), ("human", "{user}")]
        )

    def invoke(
        self, input: DraftInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> GeneratedDraft:
        import openai

        chain = (
            self._template
            | self._chat.bind(temperature=input.variant.temperature)
            | StrOutputParser()
        )
        try:
            text = chain.invoke(llm_messages(self.prompts, input), config=config)
        except openai.APIError as exc:
            raise exceptions.GeneratorUnavailable(
                f"model endpoint {self.base_url} failed: {exc}"
            ) from exc
        return GeneratedDraft(
            text=text.strip(),
            cited=cited_passages(text, input.passages),
            producer={
                "backend": "openai",
                "model": self.model_name,
                "base_url": self.base_url,
                "variant": input.variant.name,
                "temperature": input.variant.temperature,
            },
        )


def load_local_lm(model_path: Path, adapter_path: Path | None = None) -> tuple[Any, Any]:
    """A local causal LM (plus an optional PEFT LoRA adapter) and its tokenizer, in eval mode,
    from local files only: the drafter, the local chat model and nothing else load one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise exceptions.ModelNotFound(
            f"AITL_HF_MODEL_PATH={model_path}: not a loadable model ({exc})"
        ) from exc
    if adapter_path is not None:
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise exceptions.GeneratorMisconfigured(
                "AITL_HF_ADAPTER_PATH needs peft: install the 'train' extra"
            ) from exc
        try:
            model = PeftModel.from_pretrained(model, adapter_path, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise exceptions.GeneratorMisconfigured(
                f"adapter {adapter_path} does not load on {model_path}: {exc}"
            ) from exc
    model.eval()
    return model, tokenizer


def context_limit(model: Any) -> int | None:
    """The model's context length in tokens, where its config says it."""
    config = model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


@dataclass(frozen=True)
class LocalDecoding:
    """How a local LM decodes: short, near the sources, no loops (measured in prompts/README.md).

    ``copy_bias`` is added to the logit of every token that occurs in the ticket, the passages,
    the greeting or the closing: a 135M model then restates the articles' own steps instead of
    inventing its own. 0 turns it off (a large model needs no such help).
    """

    max_new_tokens: int = 110
    copy_bias: float = 5.0
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 4


class HuggingFaceDrafter(Runnable[DraftInput, GeneratedDraft]):
    """A local causal LM (plus an optional PEFT LoRA adapter) through langchain-huggingface.

    The reply opens with the greeting (given to the model as the start of its answer, so it
    continues in the reply's voice), holds at most the variant's ``max_sentences`` complete
    sentences or list items of what the model wrote, and ends with the closing.
    """

    def __init__(
        self,
        prompts: PromptLibrary,
        *,
        model_path: Path | None,
        adapter_path: Path | None,
        decoding: LocalDecoding = LocalDecoding(),
        label: str | None = None,
    ) -> None:
        if model_path is None:
            raise exceptions.GeneratorMisconfigured(
                "AITL_GENERATOR=hf needs AITL_HF_MODEL_PATH (a local model folder)"
            )
        self.prompts = prompts
        self.model_path = local_model_dir(model_path, "AITL_HF_MODEL_PATH")
        self.adapter_path = (
            local_model_dir(adapter_path, "AITL_HF_ADAPTER_PATH") if adapter_path else None
        )
        if self.adapter_path is not None:
            from rag.decoding import check_adapter_base

            check_adapter_base(self.adapter_path, self.model_path)
        self.decoding = decoding
        self.max_new_tokens = decoding.max_new_tokens
        self.label = label  # the registry version served, when there is one

    @cached_property
    def _llm(self):
        from langchain_huggingface import HuggingFacePipeline
        from transformers import pipeline

        model, tokenizer = load_local_lm(self.model_path, self.adapter_path)
        generator = pipeline(
            "text-generation",
            model=model,
            tokenizer=tokenizer,
            device="cpu",
            max_new_tokens=self.max_new_tokens,
            return_full_text=False,
        )
        return HuggingFacePipeline(pipeline=generator), tokenizer, context_limit(model)

    def warm(self) -> None:
        """Load the model now rather than on the first ticket."""
        self._llm  # noqa: B018

    def _fit(
        self, tokenizer, limit: int | None, request: DraftInput, opening: str
    ) -> tuple[DraftInput, str]:
        """Drop the lowest-ranked passages until prompt plus reply fit the model's context."""
        while True:
            messages = llm_messages(self.prompts, request)
            prompt = chat_prompt(tokenizer, messages["system"], messages["user"]) + opening
            size = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if not limit or size + self.max_new_tokens <= limit:
                return request, prompt
            if not request.passages:
                raise exceptions.GenerationError(
                    f"the prompt ({size} tokens) plus {self.max_new_tokens} new tokens exceeds "
                    f"the {limit}-token context of {self.model_path}, even without passages; "
                    "lower AITL_HF_MAX_NEW_TOKENS or use a longer-context model"
                )
            request = dataclasses.replace(request, passages=request.passages[:-1])

    def invoke(
        self, input: DraftInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> GeneratedDraft:
        from transformers import LogitsProcessorList

        from rag.decoding import CopyBias, complete_units

        llm, tokenizer, limit = self._llm
        temperature = input.variant.temperature
        opening = greeting(self.prompts, input.ticket.subject)
        input, prompt = self._fit(tokenizer, limit, input, f"{opening}\n\n")
        decoding = {
            "do_sample": temperature > 0,
            "temperature": temperature or None,
            "repetition_penalty": self.decoding.repetition_penalty,
            "no_repeat_ngram_size": self.decoding.no_repeat_ngram_size,
        }
        if self.decoding.copy_bias:
            sources = "\n".join([prompt, self.prompts.text("closing.txt")])
            decoding["logits_processor"] = LogitsProcessorList(
                [CopyBias(tokenizer, sources, self.decoding.copy_bias)]
            )
        raw = llm.bind(pipeline_kwargs=decoding).invoke(prompt, config=config)
        body = without_sign_off(complete_units(raw, input.variant.max_sentences))
        closing = self.prompts.text("closing.txt")
        parts = [opening, body] if closing in body else [opening, body, closing]
        text = "\n\n".join(part for part in parts if part)
        used = input.passages[: input.variant.max_passages]
        return GeneratedDraft(
            text=text,
            cited=cited_passages(body, used),
            producer={
                "backend": "hf",
                "model": str(self.model_path),
                "adapter": self.label or (str(self.adapter_path) if self.adapter_path else None),
                "variant": input.variant.name,
                "temperature": temperature,
            },
        )


class LocalChat:
    """A local causal LM as a chat function, ``(system, user) -> answer``: the chat template
    drafting uses (``chat_prompt``), greedy, at most ``max_new_tokens`` new tokens. Loaded on
    the first question, once; ``threads`` sets torch's CPU threads while it answers (None:
    torch's own setting). A prompt longer than the model's context is a GenerationError."""

    def __init__(self, model_path: Path, *, max_new_tokens: int, threads: int | None = None):
        self.model_path = local_model_dir(model_path, "AITL_HF_MODEL_PATH")
        self.max_new_tokens = max_new_tokens
        self.threads = threads

    @cached_property
    def _loaded(self) -> tuple[Any, Any, int | None]:
        model, tokenizer = load_local_lm(self.model_path)
        return model, tokenizer, context_limit(model)

    def __call__(self, system: str, user: str) -> str:
        import torch

        model, tokenizer, limit = self._loaded
        prompt = chat_prompt(tokenizer, system, user)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        size = inputs["input_ids"].shape[1]
        if limit and size + self.max_new_tokens > limit:
            raise exceptions.GenerationError(
                f"the prompt ({size} tokens) plus {self.max_new_tokens} new tokens exceeds the "
                f"{limit}-token context of {self.model_path}"
            )
        pad = tokenizer.pad_token_id
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.eos_token_id if pad is None else pad,
                )
        finally:
            if self.threads:
                torch.set_num_threads(before)
        return tokenizer.decode(output[0, size:], skip_special_tokens=True).strip()
