"""The chat model the LLM judge talks to: the OpenAI-compatible endpoint from settings, or,
without one, the local LLM (AITL_HF_MODEL_PATH, else the shipped SmolLM2) on this machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aitl.core.settings import Settings
from flywheel.exceptions import FlywheelError

if TYPE_CHECKING:
    from rag.llm_backends import LocalChat

Chat = Callable[[str, str], str]  # (system, user) -> the model's answer


def chat_function(settings: Settings) -> Chat:
    """(system, user) → the endpoint's answer, temperature 0 so verdicts are repeatable."""
    if not settings.openai_base_url:
        raise FlywheelError(
            "an LLM judge endpoint needs AITL_OPENAI_BASE_URL (an OpenAI-compatible API)"
        )
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        model=settings.openai_model,
        timeout=settings.openai_timeout_s,
        temperature=0,
        max_retries=2,
        max_tokens=200,
    )

    def ask(system: str, user: str) -> str:
        return str(chat.invoke([("system", system), ("human", user)]).content)

    return ask


def local_chat_function(settings: Settings) -> LocalChat:
    """(system, user) → the local LLM's answer: greedy, at most AITL_JUDGE_LLM_MAX_NEW_TOKENS
    tokens, AITL_TORCH_THREADS threads; loaded on the first question, once. Nothing is
    downloaded: the shipped SmolLM2 comes from its wheel (converted once into data_dir)."""
    from rag.factory import llm_model_path
    from rag.llm_backends import LocalChat

    return LocalChat(
        llm_model_path(settings),
        max_new_tokens=settings.judge_llm_max_new_tokens,
        threads=settings.torch_threads,
    )


def judge_chat(settings: Settings) -> tuple[Chat, str]:
    """The LLM judge's chat function and the model's name: the endpoint at
    AITL_OPENAI_BASE_URL when it is set, else the local LLM (named ``local:<folder>``)."""
    if settings.openai_base_url:
        return chat_function(settings), settings.openai_model
    chat = local_chat_function(settings)
    return chat, f"local:{chat.model_path.name}"
