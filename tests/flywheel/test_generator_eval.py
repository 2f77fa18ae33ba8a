"""The generator's offline evaluation: both drafters answer held-out tickets, an LLM (here a
local OpenAI-compatible server) compares the replies in random order, and the gate reads the
win rate."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from flywheel.generator_eval import WinRate, decide_generator, describe, parse_better, win_rate
from flywheel.llm import chat_function
from rag.generation import CONCISE, DraftInput
from rag.models import Ticket
from rag.prompts import PromptLibrary
from tests.conftest import make_settings
from tests.support.fake_openai import FakeOpenAI, Reply


@dataclass
class Text:
    text: str


class FixedDrafter:
    """Stands in for a local LM: a fixed reply, and the temperatures it was asked for."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.temperatures: list[float] = []

    def invoke(self, input: DraftInput, config=None) -> Text:
        self.temperatures.append(input.variant.temperature)
        return Text(f"{self.reply} about {input.ticket.body}")


def requests(n: int) -> list[DraftInput]:
    return [DraftInput(Ticket("", f"ticket {i}"), (), CONCISE) for i in range(n)]


def prefers(word: str):
    """A judge that picks whichever reply mentions ``word``, wherever it is shown."""

    def respond(body) -> Reply:
        user = body["messages"][-1]["content"]
        first = user.split("Reply 1:")[1].split("Reply 2:")[0]
        return Reply(json.dumps({"better": "1" if word in first else "2", "reason": "clearer"}))

    return respond


@pytest.fixture
def prompts(tmp_path):
    return PromptLibrary(make_settings("postgresql://unused/x", tmp_path).prompts_dir)


def judged(responder, prompts, tmp_path, n=12, seed=3):
    champion, challenger = FixedDrafter("old reply"), FixedDrafter("new reply")
    with FakeOpenAI(responder) as server:
        settings = make_settings("postgresql://unused/x", tmp_path, openai_base_url=server.base_url)
        chat = chat_function(settings)
        result = win_rate(requests(n), champion, challenger, chat, prompts.text, seed=seed)
    return result, server, champion, challenger


def test_the_challenger_wins_whichever_side_it_is_shown_on(prompts, tmp_path):
    result, server, champion, challenger = judged(prefers("new reply"), prompts, tmp_path)
    assert result == WinRate(wins=12, losses=0, ties=0, unreadable=0)
    shown_first = [
        "new reply" in r["messages"][-1]["content"].split("Reply 2:")[0] for r in server.requests
    ]
    assert 0 < sum(shown_first) < 12, "the order is shuffled"
    assert set(champion.temperatures) == set(challenger.temperatures) == {0.0}
    assert decide_generator(result, margin=0.005, tolerance=0.02, min_judged=3) == "promote"
    decision = describe(result, "promote")
    assert decision.promote and "100.0%" in decision.reason and "12 won" in decision.reason


def test_a_clear_loss_is_rejected_and_ties_stay_online(prompts, tmp_path):
    lost, *_ = judged(prefers("old reply"), prompts, tmp_path)
    assert lost.rate == 0.0
    assert decide_generator(lost, margin=0.005, tolerance=0.02, min_judged=3) == "reject"
    tied, *_ = judged(lambda body: Reply('{"better": "tie"}'), prompts, tmp_path)
    assert tied.rate == 0.5 and tied.ties == 12
    assert decide_generator(tied, margin=0.005, tolerance=0.02, min_judged=3) == "online"
    assert "clicks decide" in describe(tied, "online").reason


def test_garbled_answers_are_left_out_not_guessed(prompts, tmp_path):
    answers = iter(['{"better": "1"}', "I like the first one", '{"better": "maybe"}'] * 4)
    result, *_ = judged(lambda body: Reply(next(answers)), prompts, tmp_path)
    assert result.unreadable == 8 and result.judged == 4
    assert decide_generator(result, margin=0.0, tolerance=0.02, min_judged=5) == "online"
    nothing = WinRate(unreadable=3)
    assert nothing.rate is None and not describe(nothing, "online").promote


@pytest.mark.parametrize(
    ("answer", "better"),
    [('{"better": "2", "reason": "x"}', "2"), ('Sure: {"better": "TIE"}', "tie")],
)
def test_parse_better_reads_the_json_answer(answer, better):
    assert parse_better(answer) == better


@pytest.mark.parametrize("answer", ["no json", '{"better": 1.5}', "{broken", '["1"]'])
def test_parse_better_refuses_anything_else(answer):
    with pytest.raises(ValueError):
        parse_better(answer)
