"""The simulated agents' choices, which the flywheel benchmark's figures rest on: an agent
sends a draft that cites an answer and says knowledge was missing only when none does, and
names wrong missing knowledge only as often as it is told to."""

from __future__ import annotations

import random

import pytest

from sandboxes.agents.policy import confused, preference, sent_draft

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


def test_confused_picks_name_nearby_passages_that_do_not_answer():
    picks, nearby = [7, 9], [9, 1, 7, 2, 1, 3]
    assert confused(picks, GOLD, nearby, 0.0, random.Random(1)) == picks
    every = confused(picks, GOLD, nearby, 1.0, random.Random(1))
    assert len(every) == 2 and len(set(every)) == 2 and set(every) <= {1, 2, 3}
    # with nothing wrong nearby there is nothing to confuse the answer with
    assert confused(picks, GOLD, [7, 9], 1.0, random.Random(1)) == picks
    assert confused(picks, GOLD, [4], 1.0, random.Random(1)) == [4, 9]


def test_a_share_of_missing_picks_goes_wrong():
    rng = random.Random(5)
    picks = [confused([7], GOLD, range(100), 0.3, rng)[0] for _ in range(4000)]
    assert sum(p != 7 for p in picks) / len(picks) == pytest.approx(0.3, abs=0.03)
