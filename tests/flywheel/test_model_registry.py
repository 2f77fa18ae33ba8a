"""Promotions and rollbacks in the model registry on the real database: a rollback undoes the
latest promotion still standing, so rolling back walks back through what was live and never
brings back a model an admin already rolled back; App Home names what a rollback brings back."""

from __future__ import annotations

import pytest

from aitl.app.wiring import registry_entries
from flywheel import store
from flywheel.exceptions import RegistryError
from flywheel.registry import Registry
from rag import factory

KIND = "reranker"  # no index to build: the registry's bookkeeping alone


@pytest.fixture
def registry(settings, db) -> Registry:
    with db.connection() as conn:
        for version in ("r1", "r2", "r3"):
            store.add_model(
                conn, kind=KIND, version=version, path=f"/models/{version}", status="challenger"
            )
    return Registry(db, factory.embedding_versions(settings, db))


def live(registry: Registry) -> str | None:
    champion = registry.champion(KIND)
    return champion.version if champion else None


def roll_back(registry: Registry) -> str | None:
    previous = registry.rollback(KIND, "test")
    assert (previous.version if previous else None) == live(registry)
    return live(registry)


def test_rollbacks_walk_back_through_the_promotions(registry):
    for version in ("r1", "r2", "r3"):
        registry.promote(KIND, version, "test")
    assert [roll_back(registry) for _ in range(3)] == ["r2", "r1", None]
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(KIND)
    statuses = {row.version: row.status for row in registry.list()}
    assert statuses == {"r1": "retired", "r2": "retired", "r3": "retired"}


def test_a_model_rolled_back_once_does_not_come_back_with_the_next_rollback(registry):
    registry.promote(KIND, "r1", "test")
    assert roll_back(registry) is None
    registry.promote(KIND, "r2", "test")  # promoted while the shipped model was live
    assert roll_back(registry) is None, "r1 was rolled back: the shipped model was before r2"


def test_a_model_promoted_again_is_rolled_back_to_what_it_replaced_that_time(registry):
    for version in ("r1", "r2", "r1"):
        registry.promote(KIND, version, "test")
    assert [roll_back(registry) for _ in range(3)] == ["r2", "r1", None]


def test_a_champion_with_no_recorded_promotion_rolls_back_to_the_shipped_model(registry, db):
    registry.promote(KIND, "r1", "test")
    with db.connection() as conn:  # a champion crowned before promotions were recorded
        conn.execute("UPDATE model_registry SET status = 'retired' WHERE version = 'r1'")
        conn.execute("UPDATE model_registry SET status = 'champion' WHERE version = 'r2'")
    assert roll_back(registry) is None
    with db.connection() as conn:
        [(undone,)] = conn.execute(
            "SELECT count(*) FROM model_promotions WHERE undone_at IS NOT NULL"
        ).fetchall()
    assert undone == 0, "r1's promotion is not what was live, so it is not undone"


def test_app_home_names_what_a_rollback_brings_back(registry, db):
    def champion_replaces() -> dict[str, str | None]:
        return {e.version: e.replaces for e in registry_entries(db) if e.status == "champion"}

    registry.promote(KIND, "r1", "test")
    assert champion_replaces() == {"r1": None}  # the shipped model
    registry.promote(KIND, "r2", "test")
    assert champion_replaces() == {"r2": "r1"}
    assert {e.version: e.replaces for e in registry_entries(db)}["r3"] is None  # a challenger
    registry.rollback(KIND, "test")
    assert champion_replaces() == {"r1": None}


def test_models_list_names_what_a_rollback_brings_back(registry, database_url, tmp_path):
    from typer.testing import CliRunner

    from aitl.app.cli import app

    registry.promote(KIND, "r1", "test")
    registry.promote(KIND, "r2", "test")
    env = {"DATABASE_URL": database_url, "AITL_DATA_DIR": str(tmp_path), "COLUMNS": "240"}
    listed = CliRunner().invoke(app, ["models", "list"], env=env, catch_exceptions=False)
    lines = {line.split("│")[2].strip(): line for line in listed.output.splitlines() if "│" in line}
    assert lines["r2"].rstrip("│ ").endswith("r1")
    assert lines["r1"].split("│")[3].strip() == "retired"
    rolled = CliRunner().invoke(app, ["models", "rollback", KIND], env=env, catch_exceptions=False)
    assert "reranker: r1 is live" in rolled.output
    listed = CliRunner().invoke(app, ["models", "list"], env=env, catch_exceptions=False)
    assert "the shipped model" in listed.output


def test_a_rollback_for_a_champion_no_longer_live_changes_nothing(registry):
    from flywheel.exceptions import StaleModelChange

    registry.promote(KIND, "r1", "test")
    registry.promote(KIND, "r2", "test")
    with pytest.raises(StaleModelChange, match="r1 is no longer live"):
        registry.rollback(KIND, "test", live="r1")
    assert live(registry) == "r2"
    assert registry.rollback(KIND, "test", live="r2").version == "r1"
    with pytest.raises(StaleModelChange, match="r2 is no longer live"):
        registry.rollback(KIND, "test", live="r2")  # the same click again
    assert live(registry) == "r1"


def test_a_rollback_waits_for_the_change_in_progress_and_does_not_undo_it(registry, db):
    """The CLI does not go through the worker's queue: a rollback asked for while a promotion
    is being made waits for it, then sees that what it was asked to roll back is gone."""
    import threading

    from aitl.core.leader import held
    from flywheel.exceptions import StaleModelChange
    from flywheel.registry import CHANGE_LOCK

    registry.promote(KIND, "r1", "test")
    registry.promote(KIND, "r2", "test")
    outcome: list[BaseException | None] = []

    def roll_back_r2() -> None:
        try:
            registry.rollback(KIND, "from a terminal", live="r2")
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    with held(db.url, CHANGE_LOCK):  # a promotion of r3 in progress elsewhere
        rollback = threading.Thread(target=roll_back_r2)
        rollback.start()
        wait_until_someone_waits_for_a_lock(db)
        assert not outcome, "the rollback went ahead while another change was being made"
        with db.connection() as conn:
            store.crown(conn, KIND, "r3", "the promotion in progress")
    rollback.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], StaleModelChange)
    assert "r2 is no longer live (r3 is)" in str(outcome[0])
    assert live(registry) == "r3"


def wait_until_someone_waits_for_a_lock(db, timeout_s: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with db.connection() as conn:
            (waiting,) = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError("nobody waited for the model change lock")


def test_models_rollback_expect_refuses_when_another_model_is_live(registry, database_url):
    from typer.testing import CliRunner

    from aitl.app.cli import app
    from flywheel.exceptions import StaleModelChange

    registry.promote(KIND, "r1", "test")
    registry.promote(KIND, "r2", "test")
    env = {"DATABASE_URL": database_url, "COLUMNS": "240"}
    stale = CliRunner().invoke(app, ["models", "rollback", KIND, "--expect", "r1"], env=env)
    assert isinstance(stale.exception, StaleModelChange) and live(registry) == "r2"
    done = CliRunner().invoke(app, ["models", "rollback", KIND, "--expect", "r2"], env=env)
    assert done.exit_code == 0 and "reranker: r1 is live" in done.output


def test_the_history_lists_promotions_and_rollbacks_newest_first(registry, database_url):
    from typer.testing import CliRunner

    from aitl.app.cli import app

    registry.promote(KIND, "r1", "recall up")
    registry.promote(KIND, "r2", "promoted from the CLI")
    registry.rollback(KIND, "r2 drafts were worse")
    history = [(c.version, c.change, c.other, c.reason) for c in registry.history(KIND)]
    assert history == [
        ("r2", "rolled back", "r1", "r2 drafts were worse"),
        ("r2", "promoted", "r1", "promoted from the CLI"),
        ("r1", "promoted", None, "recall up"),
    ]
    assert registry.history("retriever") == []
    with pytest.raises(RegistryError, match="unknown model kind"):
        registry.history("retreiver")
    env = {"DATABASE_URL": database_url, "COLUMNS": "240"}
    listed = CliRunner().invoke(app, ["models", "history", "--limit", "2"], env=env)
    assert listed.exit_code == 0, listed.output
    cells = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in listed.output.splitlines()
        if "│" in line and "reranker" in line
    ]
    assert [c[1:] for c in cells] == [
        ["reranker", "r2", "rolled back", "r1", "r2 drafts were worse"],
        ["reranker", "r2", "promoted", "r1", "promoted from the CLI"],
    ]


def test_the_cli_says_when_it_waits_for_another_model_change(registry, db, database_url):
    import threading

    from typer.testing import CliRunner

    from aitl.app.cli import app
    from aitl.core.leader import held
    from flywheel.registry import CHANGE_LOCK

    registry.promote(KIND, "r1", "test")
    env = {"DATABASE_URL": database_url, "COLUMNS": "240"}
    result = []
    with held(db.url, CHANGE_LOCK):  # a promotion in progress in the worker
        cli = threading.Thread(
            target=lambda: result.append(
                CliRunner().invoke(app, ["models", "rollback", KIND, "--expect", "r1"], env=env)
            )
        )
        cli.start()
        wait_until_someone_waits_for_a_lock(db)
    cli.join(timeout=30)
    [done] = result
    assert done.exit_code == 0, done.output
    assert "rolling back reranker: waiting for another model change to finish" in done.output
    assert done.output.rstrip().endswith("reranker: the shipped model is live")
