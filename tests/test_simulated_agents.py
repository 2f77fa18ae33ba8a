"""The simulated agents' choices, which the flywheel benchmark's figures rest on: an agent
sends a draft that cites an answer and says knowledge was missing only when none does."""

from __future__ import annotations

import pytest

from bot.simulation import preference, sent_draft

GOLD = {7, 9}


@pytest.mark.parametrize(
    ("cited", "preferred", "sent"),
    [
        ({"A": [7, 1], "B": [2]}, "A", "A"),
        ({"A": [1], "B": [9, 7]}, "B", "B"),
        # both cite an answer equally: the agent still sends one, the first
        ({"A": [7, 1], "B": [7, 2]}, "tie", "A"),
        ({"A": [1], "B": [2]}, "both_bad", None),
        # one draft only, citing nothing that answers
        ({"A": [1]}, "tie", None),
        ({"A": [9]}, "tie", "A"),
    ],
)
def test_the_draft_sent_cites_an_answer_or_none_is_sent(cited, preferred, sent):
    assert preference(cited, GOLD) == preferred
    assert sent_draft(cited, GOLD, preferred) == sent
