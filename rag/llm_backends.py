"""LLM drafters behind the same Runnable contract as the extractive one.

``openai`` talks to any OpenAI-compatible endpoint (vLLM, Ollama, TGI) through langchain-openai;
``hf`` runs a local transformers model, optionally with a LoRA adapter trained by the flywheel.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig

from rag import exceptions
from rag.embedding import local_model_dir
from rag.generation import DraftInput, GeneratedDraft, cited_passages, llm_messages
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


class HuggingFaceDrafter(Runnable[DraftInput, GeneratedDraft]):
    """A local causal LM (plus an optional PEFT LoRA adapter) through langchain-huggingface."""

    def __init__(
        self,
        prompts: PromptLibrary,
        *,
        model_path: Path | None,
        adapter_path: Path | None,
        max_new_tokens: int,
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
        self.max_new_tokens = max_new_tokens

    @cached_property
    def _llm(self):
        from langchain_huggingface import HuggingFacePipeline
        from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

        tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True)
        if self.adapter_path is not None:
            try:
                from peft import PeftModel
            except ImportError as exc:
                raise exceptions.GeneratorMisconfigured(
                    "AITL_HF_ADAPTER_PATH needs peft: install the 'train' extra"
                ) from exc
            model = PeftModel.from_pretrained(model, self.adapter_path, local_files_only=True)
        model.eval()
        generator = pipeline(
            "text-generation",
            model=model,
            tokenizer=tokenizer,
            device="cpu",
            max_new_tokens=self.max_new_tokens,
            return_full_text=False,
        )
        config = model.config
        limit = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        return HuggingFacePipeline(pipeline=generator), tokenizer, limit

    def _prompt(self, tokenizer, messages: dict[str, str]) -> str:
        if getattr(tokenizer, "chat_template", None):
            chat = [
                {"role": "system", "content": messages["system"]},
                {"role": "user", "content": messages["user"]},
            ]
            return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return f"{messages['system']}\n\n{messages['user']}\n\nReply:\n"

    def _fit(self, tokenizer, limit: int | None, request: DraftInput) -> tuple[DraftInput, str]:
        """Drop the lowest-ranked passages until prompt plus reply fit the model's context."""
        while True:
            prompt = self._prompt(tokenizer, llm_messages(self.prompts, request))
            size = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if not limit or size + self.max_new_tokens <= limit:
                return request, prompt
            if not request.passages:
                raise exceptions.GenerationError(
                    f"the prompt ({size} tokens) plus {self.max_new_tokens} new tokens exceeds "
                    f"the {limit}-token context of {self.model_path}, even without passages; "
                    "lower AITL_GENERATION_MAX_NEW_TOKENS or use a longer-context model"
                )
            request = dataclasses.replace(request, passages=request.passages[:-1])

    def invoke(
        self, input: DraftInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> GeneratedDraft:
        llm, tokenizer, limit = self._llm
        temperature = input.variant.temperature
        sampling = {"do_sample": temperature > 0, "temperature": temperature or None}
        input, prompt = self._fit(tokenizer, limit, input)
        text = llm.bind(pipeline_kwargs=sampling).invoke(prompt, config=config).strip()
        return GeneratedDraft(
            text=text,
            cited=cited_passages(text, input.passages),
            producer={
                "backend": "hf",
                "model": str(self.model_path),
                "adapter": str(self.adapter_path) if self.adapter_path else None,
                "variant": input.variant.name,
                "temperature": temperature,
            },
        )
