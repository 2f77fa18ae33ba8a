"""The online A/B test of the generators (flywheel.online) on the real database: duel cards
drafted by the champion and a challenger, the agents' Prefer and adoption clicks recorded as
the Slack listeners record them, and the decision that promotes or retires the challenger
through the registry; what is scored (both bad left out, ties half, one adoption per card),
the pools that can hold a promotion back, and the duel as App Home and the digest show it.

``flywheel.sequential`` is imported as a module: ``test_duels`` imported by name would be
collected by pytest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from aitl.app.cli.processes import job_crons
from aitl.app.wiring import FlywheelDigest, duel_panel
from aitl.core.queue import build_deferrer
from bot.digest.views import digest_blocks, report_modal
from bot.home_views import AdminPanel, DuelPanel, HomeContent, duel_lines, home_view
from bot.services import BotServices
from flywheel import online, sequential, store
from flywheel.digest.content import digest_of
from flywheel.digest.metrics import week_of
from flywheel.digest.render import render_markdown
from flywheel.digest.report import Digest
from flywheel.events import AgentStats
from flywheel.feedback import SENT_REPLY, Feedback
from flywheel.registry import Registry
from flywheel.services import FlywheelServices
from flywheel.serving import names, served
from rag import factory
from rag import store as rag_store
from rag.models import Draft, DraftSet, Ticket
from tests.conftest import make_settings

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POLICY = sequential.SequentialPolicy(alpha=0.05, tau=0.1, min_duels=10, max_duels=60)
# C: the challenger's draft preferred, X: the champion's, T: a tie, -: both bad. With the
# policy above the challenger is found better at the 21st scored duel (the "-" is not one)
WINNING = "CCCTCCCC-CXCCCCCCCCCCCC"
LOSING = WINNING.replace("C", "c").replace("X", "C").replace("c", "X")


@pytest.fixture
def settings(database_url, tmp_path):
    """The extractive champion with the local LLM as challenger (so trained adapters are
    served), a small sequential policy, and an LLM folder that needs no conversion."""
    llm = tmp_path / "llm"
    llm.mkdir()
    return make_settings(
        database_url,
        tmp_path,
        generator="extractive",
        llm_challenger=True,
        hf_model_path=llm,
        duel_alpha=POLICY.alpha,
        duel_tau=POLICY.tau,
        duel_min=POLICY.min_duels,
        duel_max=POLICY.max_duels,
    )


@pytest.fixture
def registry(settings, db) -> Registry:
    return Registry(db, factory.embedding_versions(settings, db))


@pytest.fixture
def decision(settings, db, registry) -> online.OnlineDecision:
    return online.OnlineDecision(settings, db, registry)


# --- duels in the database -----------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """A champion-vs-challenger card as the pipeline stores it."""

    set_id: int
    ticket_ref: str
    drafts: dict[str, int]  # label → draft id
    challenger_label: str

    @property
    def champion_label(self) -> str:
        return "B" if self.challenger_label == "A" else "A"


def card(db, n: int, challenger: str, champion: str = "extractive") -> Card:
    """Draft set ``n``: one draft from each generator, the challenger's as A or B in turn."""
    label = "AB"[n % 2]
    drafts = tuple(
        Draft(
            side,
            f"Draft {side} of ticket {n}.",
            (),
            {
                "variant": "CONCISE",
                "role": "challenger" if side == label else "champion",
                "generator": challenger if side == label else champion,
            },
        )
        for side in "AB"
    )
    ticket = Ticket("Refund", f"Where is my refund for order {n}?")
    ref = f"zendesk:{n}"
    with db.connection() as conn:
        set_id = rag_store.save_draft_set(
            conn, ref, ticket.query_text(), DraftSet(ticket, (), (), drafts, {})
        )
        stored = {d.label: d.id for d in rag_store.drafts_of_set(conn, set_id)}
    return Card(set_id, ref, stored, label)


def click(
    db,
    duel: Card,
    kind: str,
    value: str,
    *,
    at: datetime,
    agent: str = "U1",
    channel: str | None = "C1",
    draft: str | None = None,
    subject: str = "",
    source: str = "slack",
) -> None:
    """One click recorded as the Slack listeners record it (``draft``: the label used)."""
    feedback = Feedback(
        kind=kind,
        value=value,
        draft_set_id=duel.set_id,
        agent_id=agent,
        clicked_at=at,
        subject=subject,
        draft_id=duel.drafts[draft] if draft else None,
        source=source,
        source_ref={"channel": channel} if channel else {},
    )
    with db.connection() as conn:
        store.record(
            conn,
            feedback,
            ticket_ref=duel.ticket_ref,
            draft_ids=list(duel.drafts.values()),
            shown_at=at - timedelta(minutes=1),
        )


def prefer(db, duel: Card, outcome: str, *, at: datetime, **kwargs) -> None:
    """C: the challenger's draft, X: the champion's, T: a tie, -: both bad."""
    value = {
        "C": duel.challenger_label,
        "X": duel.champion_label,
        "T": "tie",
        "-": "both_bad",
    }[outcome]
    click(db, duel, "preference", value, at=at, **kwargs)


def play(
    db,
    challenger: str,
    outcomes: str,
    *,
    first: int = 0,
    start: datetime = T0,
    step: timedelta = timedelta(hours=1),
    channels: Sequence[str] = ("C1",),
    champion: str = "extractive",
) -> list[Card]:
    """One card per outcome, each answered by one of three agents in one of ``channels``."""
    cards = []
    for i, outcome in enumerate(outcomes):
        n = first + i
        duel = card(db, n, challenger, champion)
        prefer(
            db,
            duel,
            outcome,
            at=start + i * step,
            agent=f"U{n % 3}",
            channel=channels[n % len(channels)],
        )
        cards.append(duel)
    return cards


def add_generator(db, version: str, status: str = "challenger") -> None:
    with db.connection() as conn:
        store.add_model(
            conn, kind="generator", version=version, path=f"/models/{version}", status=status
        )


def statuses(registry: Registry) -> dict[str, str]:
    return {r.version: r.status for r in registry.list() if r.kind == "generator"}


def decisions(db) -> list[store.DuelDecision]:
    with db.connection() as conn:
        return store.duel_decisions(conn)


def scored(outcomes: str) -> list[float]:
    return [{"C": 1.0, "X": 0.0, "T": 0.5}[c] for c in outcomes if c != "-"]


# --- the decision in the database -----------------------------------------------------------


def test_a_challenger_preferred_on_most_duels_is_promoted_once(decision, registry, db):
    add_generator(db, "r1")
    assert decision.pair() == ("extractive", "r1")
    play(db, "r1", WINNING[:-3], channels=("C1", "C2"))
    running = decision.state()
    assert running.action == "running" and running.preference.duels == 19
    assert decision.check() is None, "no decision before the test crosses"
    assert statuses(registry) == {"r1": "challenger"} and decisions(db) == []

    play(db, "r1", WINNING[-3:], first=len(WINNING) - 3, start=T0 + timedelta(days=2))
    duel = decision.check()
    assert duel is not None and duel.action == "promote"
    assert duel.preference.verdict == "better" and duel.preference.duels == 21
    assert duel.preference.ignored == 1, "the duel after the crossing is not counted"
    assert statuses(registry) == {"r1": "champion"}
    with db.connection() as conn:
        [(version, replaced, reason)] = conn.execute(
            "SELECT version, replaced, reason FROM model_promotions"
        ).fetchall()
    assert (version, replaced) == ("r1", None) and reason.startswith("online A/B: better")
    [row] = decisions(db)
    assert (row.champion, row.challenger, row.verdict, row.action, row.duels) == (
        "extractive",
        "r1",
        "better",
        "promoted",
        21,
    )
    assert row.reason == reason and row.figures["preference"]["verdict"] == "better"
    assert set(row.figures["pools"]) == {"C1", "C2"}

    assert decision.check() is None, "the pair is decided: a second check does nothing"
    assert decision.pair() is None, "r1 drafts as the champion, no challenger beside it"
    assert len(decisions(db)) == 1 and statuses(registry) == {"r1": "champion"}


def test_a_losing_challenger_retires_and_the_newest_waiting_takes_its_turn(
    settings, decision, registry, db
):
    add_generator(db, "r1")  # in the A/B test
    add_generator(db, "r2")  # trained by later cycles while r1's test ran: they wait
    add_generator(db, "r3")
    assert decision.pair() == ("extractive", "r1"), "one test at a time, the oldest first"
    play(db, "r1", LOSING)
    before = decision.state()
    assert before.action == "retire" and before.reason.startswith("worse than the champion")

    duel = decision.check()
    assert duel is not None and duel.action == "retire"
    assert statuses(registry) == {"r1": "retired", "r2": "retired", "r3": "challenger"}
    rows = {r.version: r for r in registry.list()}
    assert rows["r1"].decision == f"online A/B: {duel.reason}"
    assert rows["r2"].decision == "superseded by r3 while waiting"
    assert rows["r1"].retired_at is not None
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM model_promotions").fetchone()[0] == 0
    [row] = decisions(db)
    assert (row.challenger, row.verdict, row.action) == ("r1", "worse", "retired")
    choice = served(settings, registry.list())
    assert choice.champion is None and names(choice) == ("extractive", "r3")
    assert decision.check() is None, "r3's test starts from nothing"


def test_the_next_adapter_is_the_challenger_after_a_retirement(decision, registry, db):
    add_generator(db, "r1")
    play(db, "r1", LOSING)
    assert decision.check().action == "retire"
    add_generator(db, "r2")  # the next cycle's adapter
    assert decision.pair() == ("extractive", "r2")
    fresh = decision.state()
    assert fresh.preference.duels == 0 and fresh.action == "running", "r1's duels are not r2's"


def test_a_new_challenger_retires_the_older_ones_so_one_duel_runs(registry, db):
    add_generator(db, "r1")
    add_generator(db, "r2")
    add_generator(db, "c1", status="champion")
    with db.connection() as conn:
        retired = store.retire_older_challengers(conn, "generator", "r2", "replaced by r2")
    assert retired == 1
    assert statuses(registry) == {"r1": "retired", "r2": "challenger", "c1": "champion"}
    assert {r.version: r.decision for r in registry.list()}["r1"] == "replaced by r2"


def test_the_untrained_llm_losing_is_registered_retired_and_no_longer_drafts(
    settings, decision, registry, db
):
    assert registry.list() == []
    assert served(settings, []).llm_challenger
    assert decision.pair() == ("extractive", factory.SHIPPED_LLM)
    play(db, factory.SHIPPED_LLM, LOSING)

    duel = decision.check()
    assert duel is not None and duel.action == "retire"
    [row] = registry.list()
    assert (row.kind, row.version, row.status) == ("generator", factory.SHIPPED_LLM, "retired")
    assert row.path == str(settings.hf_model_path)
    assert row.decision == f"online A/B: {duel.reason}"
    choice = served(settings, registry.list())
    assert not choice.llm_challenger and choice.challenger is None
    assert names(choice) == ("extractive", "")
    assert decision.pair() is None and decision.check() is None
    [decided] = decisions(db)
    assert (decided.challenger, decided.action) == (factory.SHIPPED_LLM, "retired")


def test_the_untrained_llm_winning_becomes_the_champion(settings, decision, registry, db):
    play(db, factory.SHIPPED_LLM, WINNING)
    assert decision.check().action == "promote"
    assert statuses(registry) == {factory.SHIPPED_LLM: "champion"}
    choice = served(settings, registry.list())
    assert names(choice) == (factory.SHIPPED_LLM, "") and not choice.llm_challenger
    add_generator(db, "r1")  # adapters trained from then on duel the LLM
    assert decision.pair() == (factory.SHIPPED_LLM, "r1")


def test_duels_of_another_pair_do_not_count(decision, db):
    add_generator(db, "r1")
    play(db, "r0", WINNING)  # an older challenger against the same champion
    play(db, "r1", WINNING, first=100, champion="r0")  # r1 against another champion
    with db.connection() as conn:  # cards of the champion's two styles: no duel
        rag_store.save_draft_set(
            conn,
            "zendesk:500",
            "q",
            DraftSet(
                Ticket("s", "b"),
                (),
                (),
                tuple(Draft(s, "t", (), {"role": "variant", "generator": "r1"}) for s in "AB"),
                {},
            ),
        )
    duel = decision.state()
    assert (duel.champion, duel.challenger) == ("extractive", "r1")
    assert duel.preference.duels == 0 and duel.action == "running"


def test_the_state_until_a_moment_ignores_the_clicks_after_it(decision, db):
    add_generator(db, "r1")
    cards = play(db, "r1", "C" * 12)  # clicked at T0, T0 + 1 h, … T0 + 11 h
    # the first card's agent changed their mind a day later
    prefer(db, cards[0], "X", at=T0 + timedelta(days=1), agent="U0")

    now = decision.state()
    assert now.preference.duels == 12 and now.preference.win_rate == pytest.approx(11 / 12)
    then = decision.state(until=T0 + timedelta(hours=5, minutes=30))
    assert then.preference.duels == 6 and then.preference.verdict == "running"
    assert then.preference.win_rate == 1.0, "the change of mind came after: unseen"
    assert then.action == "running"
    assert decision.state(until=T0).preference.duels == 0
    # seven more for the challenger two days on decide the test, but not as of before them
    play(db, "r1", "C" * 7, first=12, start=T0 + timedelta(days=2))
    assert decision.state().preference.verdict == "better"
    earlier = decision.state(until=T0 + timedelta(days=2))
    assert earlier.preference.duels == 12 and earlier.action == "running"


def test_adoptions_count_once_per_card_in_the_database(decision, db):
    add_generator(db, "r1")
    cards = play(db, "r1", "T" * 4)
    first, second, third, fourth = cards
    at = T0 + timedelta(days=1)
    # an agent used the champion's draft, but the reply sent in Zendesk was the challenger's
    click(db, first, "adoption", "as_is", at=at, draft=first.champion_label)
    click(
        db,
        first,
        "adoption",
        "edited",
        at=at - timedelta(hours=1),
        draft=first.challenger_label,
        subject=SENT_REPLY,
        source="zendesk",
        channel=None,
    )
    # two agents: the later click stands for the card
    click(db, second, "adoption", "as_is", at=at, draft=second.challenger_label, agent="U1")
    click(
        db,
        second,
        "adoption",
        "edited",
        at=at + timedelta(minutes=5),
        agent="U2",
        draft=second.champion_label,
    )
    click(db, third, "adoption", "not_used", at=at)  # neither draft used: no adoption duel
    # changed from the champion's draft to the challenger's: the standing answer counts
    click(db, fourth, "adoption", "as_is", at=at, draft=fourth.champion_label, agent="U3")
    click(
        db,
        fourth,
        "adoption",
        "as_is",
        at=at + timedelta(hours=2),
        agent="U3",
        draft=fourth.challenger_label,
    )

    duel = decision.state()
    assert duel.adoption.duels == 3
    assert duel.adoption.win_rate == pytest.approx(2 / 3)
    assert duel.preference.duels == 4 and duel.preference.win_rate == 0.5


def test_the_duel_job_promotes_and_tells_the_admins(settings, db, registry):
    add_generator(db, "r1")
    play(db, "r1", WINNING)
    told: list[tuple[str, str]] = []
    services = FlywheelServices(
        settings, db, tell=lambda user, text: told.append((user, text)), admins=lambda: ["UA"]
    )
    add_generator(db, "r2")  # trained while r1's test ran: its turn comes next
    said = services.decide_duel()
    assert statuses(registry) == {"r1": "champion", "r2": "challenger"}
    [(user, text)] = told
    assert user == "UA" and text == said
    assert text.startswith("Online A/B test: challenger `r1` promoted.")
    assert "`r1` drafts as the champion from now on" in text
    assert "`r2`, which waited its turn, is the challenger now" in text
    assert services.decide_duel() is None and len(told) == 1


# --- what is scored -------------------------------------------------------------------------


def answer(
    set_id: int,
    kind: str,
    value: str,
    minute: int,
    *,
    draft_id: int | None = None,
    agent: str = "U1",
    subject: str = "",
    channel: str | None = "C1",
) -> store.DuelAnswer:
    source = "zendesk" if subject == SENT_REPLY else "slack"
    at = T0 + timedelta(minutes=minute)
    return store.DuelAnswer(set_id, kind, value, draft_id, agent, subject, source, channel, at)


# set n: the champion's draft 10n, the challenger's 10n + 1, the challenger's label A or B
SETS = [rag_store.DuelSet(n, 10 * n, 10 * n + 1, "AB"[n % 2]) for n in range(1, 7)]


def test_both_bad_is_left_out_and_ties_count_half():
    answers = [
        answer(1, "preference", "B", 1),  # set 1: the challenger is B
        answer(2, "preference", "B", 2),  # set 2: the challenger is A
        answer(3, "preference", "tie", 3),
        answer(4, "preference", "both_bad", 4),
        answer(5, "preference", "A", 5, agent="U2", channel=None),
        answer(99, "preference", "A", 6),  # not a duel of this pair
    ]
    seen = online.outcomes(SETS, answers)
    assert seen.preference == [1.0, 0.0, 0.5, 0.0]
    assert seen.pools == {"C1": [1.0, 0.0, 0.5], "direct": [0.0]}
    assert seen.adoption == []


def test_one_adoption_per_card_and_the_sent_reply_wins():
    answers = [
        # set 1: an agent's click, then the reply sent (the challenger's draft): the reply
        answer(1, "adoption", "as_is", 1, draft_id=10),
        answer(1, "adoption", "edited", 2, draft_id=11, subject=SENT_REPLY, channel=None),
        # set 2: the reply sent first, an agent's later click does not replace it
        answer(2, "adoption", "edited", 3, draft_id=20, subject=SENT_REPLY, channel=None),
        answer(2, "adoption", "as_is", 4, draft_id=21, agent="U2"),
        # set 3: two agents' clicks, the later one stands
        answer(3, "adoption", "as_is", 5, draft_id=30),
        answer(3, "adoption", "as_is", 6, draft_id=31, agent="U2"),
        # set 4: not used, or a draft of another set: nothing
        answer(4, "adoption", "not_used", 7),
        answer(4, "adoption", "as_is", 8, draft_id=51, agent="U2"),
    ]
    seen = online.outcomes(SETS, answers)
    # ordered by the moment of the adoption that stands: set 1 at 2, set 2 at 3, set 3 at 6
    assert seen.adoption == [1.0, 0.0, 1.0]
    assert seen.preference == []


def test_a_pool_that_finds_the_challenger_worse_retires_it():
    ones, zeros = [1.0] * 30, [0.0] * 20
    pooled = online.Outcomes(preference=ones + zeros, pools={"C1": ones})
    assert online.judge("extractive", "r1", pooled, POLICY).action == "promote"

    split = online.Outcomes(preference=ones + zeros, pools={"C1": ones, "C2": zeros})
    duel = online.judge("extractive", "r1", split, POLICY)
    assert duel.preference.verdict == "better", "the pooled test alone would promote"
    assert duel.pools["C2"].verdict == "worse"
    assert duel.action == "retire" and duel.verdict == "worse", "not left drafting for ever"
    assert duel.reason.startswith("better overall but worse for the agents in C2")
    assert set(duel.figures()["pools"]) == {"C1", "C2"}


def test_adoptions_that_say_worse_retire_a_preferred_challenger():
    seen = online.Outcomes(preference=[1.0] * 20, adoption=[0.0] * 20, pools={"C1": [1.0] * 20})
    duel = online.judge("extractive", "r1", seen, POLICY)
    assert duel.preference.verdict == "better" and duel.adoption.verdict == "worse"
    assert duel.action == "retire" and duel.reason.startswith("worse than the champion")
    assert duel.verdict == "worse", "the stored verdict agrees with the action"


def test_no_difference_by_max_duels_retires_the_challenger():
    seen = online.Outcomes(preference=[1.0, 0.0] * 30)
    duel = online.judge("extractive", "r1", seen, POLICY)
    assert duel.preference.verdict == "no_difference"
    assert duel.action == "retire"
    assert duel.reason.startswith(f"no difference detected in {POLICY.max_duels} duels")
    short = online.judge("extractive", "r1", online.Outcomes([1.0, 0.0] * 29), POLICY)
    assert short.action == "running" and short.reason.startswith("no decision yet")


def test_one_preference_per_card_when_several_agents_answer_it():
    answers = [answer(1, "preference", "B", 1), answer(1, "preference", "A", 2, agent="U2")]
    assert online.outcomes(SETS, answers).preference == [0.0], "the latest answer on the card"
    both_bad = [answer(1, "preference", "B", 1), answer(1, "preference", "both_bad", 2, agent="U2")]
    assert online.outcomes(SETS, both_bad).preference == []


def test_the_settings_make_the_policy(settings):
    assert online.policy_of(settings) == POLICY
    assert "duel" in job_crons(settings)
    assert job_crons(settings)["duel"] == settings.duel_cron


# --- App Home and the digest ------------------------------------------------------------------


def test_duel_lines_for_app_home():
    running = DuelPanel(
        champion="extractive",
        challenger="r<1>",
        duels=20,
        win_rate=0.6,
        low=0.45,
        high=0.75,
        state="no decision yet (preferences: …)",
        adoptions=8,
        adoption_rate=0.5,
    )
    text = duel_lines(running)
    assert text.startswith("*Live A/B test* — challenger `r&lt;1&gt;` vs champion `extractive`")
    assert "challenger preferred in 60% of 20 duels (interval 45%–75%)" in text
    assert "its draft used in 50% of 8 adoptions" in text
    assert text.endswith("_no decision yet (preferences: …)_")
    fresh = DuelPanel("extractive", "r1", 0, None, None, None, "no decision yet", decided="retired")
    text = duel_lines(fresh)
    assert "no duels answered yet" in text and "adoptions" not in text
    assert "_decided: retired. no decision yet_" in text


def admin_home(panel: AdminPanel) -> str:
    content = HomeContent("UADMIN", True, AgentStats({}, 0, {}, None), panel)
    return json.dumps(home_view(content).to_dict(), ensure_ascii=False)


def test_an_admins_app_home_shows_the_live_test(settings, db):
    add_generator(db, "r1")
    play(db, "r1", "CCCXCT-")
    services = BotServices(
        settings,
        db,
        build_deferrer(db.url),
        digest_content=FlywheelDigest(db),
        duel=lambda: duel_panel(settings, db),
    )
    panel = services.admin_panel()
    assert panel.duel is not None
    assert (panel.duel.champion, panel.duel.challenger, panel.duel.duels) == (
        "extractive",
        "r1",
        6,
    )
    assert panel.duel.win_rate == pytest.approx(4.5 / 6) and panel.duel.decided is None
    home = admin_home(panel)
    assert "*Live A/B test* — challenger `r1` vs champion `extractive`" in home
    assert "challenger preferred in 75% of 6 duels" in home
    assert "needs 10 duels" in home

    # no challenger drafting: no section
    services = BotServices(settings, db, build_deferrer(db.url), digest_content=FlywheelDigest(db))
    assert "Live A/B test" not in admin_home(services.admin_panel())


def test_app_home_draws_when_the_duel_cannot_be_read(settings, db):
    def broken() -> DuelPanel:
        raise RuntimeError("the database went away")

    services = BotServices(
        settings, db, build_deferrer(db.url), digest_content=FlywheelDigest(db), duel=broken
    )
    panel = services.admin_panel()
    assert panel.duel is None and "Live A/B test" not in admin_home(panel)


def test_the_digest_reports_the_decision_and_the_running_duel(settings, decision, db):
    window = week_of(datetime.now(UTC))
    start = window.start
    add_generator(db, "r1")
    # no "both bad": it would make a knowledge gap, and clustering gaps loads an embedder
    play(db, "r1", WINNING.replace("-", ""), start=start, step=timedelta(seconds=1))
    assert decision.check().action == "promote"
    add_generator(db, "r2")  # the next cycle's adapter duels the new champion
    play(db, "r2", "CX", first=100, start=start, step=timedelta(seconds=1), champion="r1")
    # clicked after the week's end: not in its digest
    play(db, "r2", "CC", first=200, start=window.end + timedelta(hours=1), champion="r1")

    digest = digest_of(settings, db, window)
    assert digest.duel is not None
    assert (digest.duel["champion"], digest.duel["challenger"]) == ("r1", "r2")
    assert digest.duel["duels"] == 2 and digest.duel["win_rate"] == 0.5
    assert digest.duel["verdict"] == "running" and digest.duel["decided"] is None
    [decided] = digest.duel_decisions
    assert (decided["challenger"], decided["action"], decided["duels"]) == ("r1", "promoted", 21)

    markdown = render_markdown(digest)
    section = markdown.split("## Online A/B test of the drafts\n", 1)[1].split("\n## ", 1)[0]
    assert "- generator r1 promoted by the online A/B test against extractive" in section
    assert "- Running: challenger r2 vs champion r1: preferred in 50% of 2 duels" in section
    assert section.rstrip().endswith("; test running")

    report = json.dumps([b.to_dict() for b in report_modal(digest, can_draft=False).blocks])
    assert "*Online A/B test of the drafts*" in report
    assert "generator r1 promoted by the online A/B test" in report
    assert "Running: challenger r2 vs champion r1" in report
    summary = json.dumps([b.to_dict() for b in digest_blocks(digest)])
    assert "Live A/B test: challenger r2 vs champion r1" in summary

    again = Digest.from_json(json.loads(digest.dumps()))
    assert again.duel == digest.duel and again.duel_decisions == digest.duel_decisions


def test_a_digest_without_a_duel_says_so(settings, db):
    digest = digest_of(settings, db, week_of(T0))
    assert digest.duel is not None, "the untrained LLM is the challenger"
    assert digest.duel["challenger"] == factory.SHIPPED_LLM and digest.duel["duels"] == 0
    quiet = Digest.from_json({**digest.to_json(), "duel": None})
    assert "- No challenger drafts beside the champion." in render_markdown(quiet)
    assert "No challenger drafts beside the champion." in json.dumps(
        [b.to_dict() for b in report_modal(quiet, can_draft=False).blocks]
    )
