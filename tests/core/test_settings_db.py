"""Settings, the database bootstrap, migrations and /healthz against the real Postgres."""

from __future__ import annotations

import threading

import psycopg
import pytest
from starlette.testclient import TestClient

from aitl.app import web
from aitl.app.web import create_app
from aitl.core import exceptions, migrations
from aitl.core.bootstrap import open_database
from aitl.core.db import redact_url
from aitl.core.settings import Settings
from tests.conftest import create_database, drop_database, make_settings
from tests.support.health import ready


def test_settings_read_prefixed_env_dotenv_and_bare_database_url(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("AITL_RETRIEVE_K=42\nAITL_GENERATOR=openai\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw-7f3a9@db.example/aitl")
    monkeypatch.setenv("AITL_CONTEXT_K", "3")
    settings = Settings()
    assert settings.retrieve_k == 42
    assert settings.generator == "openai"
    assert settings.context_k == 3
    assert settings.database_url.get_secret_value().endswith("db.example/aitl")
    assert "pw-7f3a9" not in repr(settings)


def test_invalid_setting_names_the_field(monkeypatch):
    monkeypatch.setenv("AITL_GENERATOR", "gpt-banana")
    with pytest.raises(ValueError, match="generator"):
        Settings(_env_file=None)


def test_redact_url_hides_password():
    assert redact_url("postgresql://me:hunter2@host/db") == "postgresql://me:***@host/db"


def test_open_database_applies_migrations_to_an_empty_database(pg_server_url, tmp_path):
    url = create_database(pg_server_url, template=None)
    try:
        waiting = migrations.pending(url)
        assert waiting[0] == "0001.knowledge-base" and waiting[-1] == "procrastinate"
        database = open_database(make_settings(url, tmp_path))
        try:
            assert migrations.pending(url) == []
            # a second start applies nothing and loses nothing
            assert migrations.upgrade(url) == []
        finally:
            database.close()
    finally:
        drop_database(pg_server_url, url)


def test_database_without_pgvector_gets_a_clear_error(pg_server_url, tmp_path):
    url = create_database(pg_server_url, template=None)
    try:
        # PostgreSQL 18 looks for extensions only where extension_control_path says
        hidden = url + "&options=-c%20extension_control_path%3D%2Fnonexistent"
        with pytest.raises(exceptions.VectorExtensionMissing, match="pgvector"):
            open_database(make_settings(hidden, tmp_path))
        with psycopg.connect(url) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname='public'")
            assert tables.fetchone()[0] == 0, "nothing may be half-created"
    finally:
        drop_database(pg_server_url, url)


def test_unreachable_database_is_reported_without_password(tmp_path):
    url = "postgresql://aitl:topsecret@127.0.0.1:1/aitl?connect_timeout=2"
    with pytest.raises(exceptions.DatabaseUnavailable) as info:
        open_database(make_settings(url, tmp_path))
    assert "topsecret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


def test_healthz_reports_database_and_migrations(settings, db):
    with TestClient(create_app(settings, database=db)) as client:
        response = ready(client)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "migrations": "current"}


def test_healthz_says_starting_until_the_models_are_loaded(settings, db, monkeypatch):
    """A load balancer (or a test) must not send an agent's search to a process whose encoder
    is still loading: the first search would miss Slack's 3 s."""
    loaded = threading.Event()

    def slow_warm(services) -> None:
        loaded.wait(30)
        services.ready.set()

    monkeypatch.setattr(web, "warm", slow_warm)
    with TestClient(create_app(settings, database=db)) as client:
        starting = client.get("/healthz")
        loaded.set()
        response = ready(client)
    assert starting.status_code == 503
    assert starting.json() == {
        "status": "starting",
        "models": "loading",
        "database": "ok",
        "migrations": "current",
    }
    assert response.status_code == 200


def test_healthz_is_503_when_migrations_are_pending(settings, db):
    with db.connection() as conn:  # pretend this code is newer than the schema
        conn.execute("DELETE FROM _yoyo_migration WHERE migration_id = '0001.knowledge-base'")
    with TestClient(create_app(settings, database=db)) as client:
        response = ready(client)
    assert response.status_code == 503
    assert response.json()["migrations"] == "pending: 0001.knowledge-base"


def test_embedded_database_starts_in_data_dir(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    database = open_database(settings)
    try:
        assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()
        with database.connection() as conn:
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'")
            assert version.fetchone()[0].startswith("0.8")
    finally:
        database.close()
