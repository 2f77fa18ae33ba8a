"""The chat model the LLM judge talks to: the OpenAI-compatible endpoint from settings."""

from __future__ import annotations

from collections.abc import Callable

from aitl.core.settings import Settings
from flywheel.exceptions import FlywheelError


def chat_function(settings: Settings) -> Callable[[str, str], str]:
    """(system, user) → the model's answer, temperature 0 so verdicts are repeatable."""
    if not settings.openai_base_url:
        raise FlywheelError("AITL_JUDGE=llm needs AITL_OPENAI_BASE_URL (an OpenAI-compatible API)")
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
