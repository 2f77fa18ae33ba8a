"""Secrets at rest and in logs: `aitl secrets status | rotate` against real Postgres, and the
output of real `aitl` processes grepped for every secret they handled."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from aitl.app.cli import app
from aitl.core import exceptions
from aitl.core.secrets import SecretBox, SecretStore, key_file_of, load_keys, write_key_file
from tests.support.sandboxes import zendesk_server

STORED = {"zendesk.email": "ops@acme.example", "zendesk.api_token": "zd-token-0123456789abcdef"}


def env_of(settings, **extra) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "AITL_DATA_DIR": str(settings.data_dir),
        **extra,
    }


def stored_ciphertexts(db) -> dict[str, bytes]:
    with db.connection() as conn:
        rows = conn.execute("SELECT name, ciphertext FROM connector_secrets").fetchall()
    return {name: bytes(c) for name, c in rows}


def put_all(db, keys: list[str]) -> None:
    store = SecretStore(db, SecretBox(keys))
    for name, value in STORED.items():
        store.put(name, value)


def test_rotating_the_key_file_moves_every_secret_to_a_new_key(settings, db):
    key_file = key_file_of(settings.data_dir)
    [old] = load_keys(None, key_file)
    put_all(db, [old])
    before = stored_ciphertexts(db)
    runner = CliRunner()

    ran = runner.invoke(app, ["secrets", "rotate"], env=env_of(settings))
    assert ran.exit_code == 0, ran.output
    assert "2 secrets re-encrypted with a new key in the key file" in ran.output
    [new] = load_keys(None, key_file)
    assert new != old and oct(key_file.stat().st_mode & 0o777) == "0o600"
    after = stored_ciphertexts(db)
    assert set(after) == set(before) and all(after[n] != before[n] for n in after)
    for name, value in STORED.items():
        assert SecretBox([new]).decrypt(after[name]) == value
        with pytest.raises(exceptions.ConfigurationError, match="cannot be decrypted"):
            SecretBox([old]).decrypt(after[name])

    status = runner.invoke(app, ["secrets", "status"], env=env_of(settings))
    assert status.exit_code == 0, status.output
    assert "zendesk.api_token" in status.output and "the newest key" in status.output
    assert "zd-token" not in status.output and new not in status.output


def test_a_rotation_cut_short_loses_nothing_and_status_says_what_is_left(settings, db):
    key_file = key_file_of(settings.data_dir)
    [old] = load_keys(None, key_file)
    put_all(db, [old])
    # the first step of a rotation: the new key written in front of the old, then a crash
    write_key_file(key_file, [Fernet.generate_key().decode(), old])
    runner = CliRunner()
    status = runner.invoke(app, ["secrets", "status"], env=env_of(settings))
    assert status.exit_code == 1 and "an older key (#2)" in status.output
    assert "2 not on the newest key" in status.output
    assert runner.invoke(app, ["secrets", "rotate"], env=env_of(settings)).exit_code == 0
    keys = load_keys(None, key_file)
    assert len(keys) == 1 and old not in keys
    store = SecretStore(db, SecretBox(keys))
    assert {name: store.get(name) for name in STORED} == STORED


def test_rotating_configured_keys_moves_secrets_to_the_first_one(settings, db):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    put_all(db, [old])
    runner = CliRunner()
    both = env_of(settings, AITL_SECRETS_KEY=f"{new},{old}")
    assert runner.invoke(app, ["secrets", "status"], env=both).exit_code == 1

    ran = runner.invoke(app, ["secrets", "rotate"], env=both)
    assert ran.exit_code == 0, ran.output
    assert "2 secrets re-encrypted with the first key of AITL_SECRETS_KEY" in ran.output
    assert "1 older keys can now be removed" in ran.output
    only_new = env_of(settings, AITL_SECRETS_KEY=new)
    status = runner.invoke(app, ["secrets", "status"], env=only_new)
    assert status.exit_code == 0 and "AITL_SECRETS_KEY" in status.output
    assert not key_file_of(settings.data_dir).exists(), "configured keys need no key file"

    # dropping the new key too early is reported, not silently skipped
    early = runner.invoke(app, ["secrets", "status"], env=env_of(settings, AITL_SECRETS_KEY=old))
    assert early.exit_code == 1 and "no configured key" in early.output


# --- logs --------------------------------------------------------------------------------

SLACK_TOKEN = "xoxb-1111111111-2222222222-QWErtyUIOPasdfGHJKLzxcv"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ADMIN_KEY = Fernet.generate_key().decode()


def aitl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`aitl` in its own process, as an operator runs it, verbose; stdout and stderr as one."""
    return subprocess.run(
        [sys.executable, "-c", "from aitl.app.cli import main; main()", "-v", *args],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_no_secret(output: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s in output]
    assert not leaked, f"secrets in the output: {leaked}\n{output}"


def test_secrets_never_appear_in_the_logs_of_real_processes(settings, db, tmp_path):
    with zendesk_server() as zendesk:
        env = env_of(
            settings,
            AITL_ZENDESK_BASE_URL=zendesk.url,
            AITL_SLACK_BOT_TOKEN=SLACK_TOKEN,
            AITL_SLACK_SIGNING_SECRET=SIGNING_SECRET,
            AITL_SECRETS_KEY=ADMIN_KEY,
        )
        refused = aitl(
            [
                "zendesk",
                "connect",
                "--email",
                zendesk.agent_email,
                "--token",
                "wrong-token-98765",
                "--public-url",
                "https://aitl.example.com",
            ],
            env,
        )
        connected = aitl(
            [
                "zendesk",
                "connect",
                "--email",
                zendesk.agent_email,
                "--token",
                zendesk.api_token,
                "--public-url",
                "https://aitl.example.com",
            ],
            env,
        )
        runs = [refused, connected]
        runs += [aitl(args, env) for args in (["zendesk", "status"], ["zendesk", "poll"])]
        runs += [aitl(["secrets", "status"], env), aitl(["secrets", "rotate"], env)]
        webhook_secret = SecretStore(db, SecretBox([ADMIN_KEY])).get("zendesk.webhook_secret")
    assert refused.returncode != 0 and "refused the credentials" in refused.stdout + refused.stderr
    assert connected.returncode == 0, connected.stdout + connected.stderr
    assert webhook_secret, "the connection stored Zendesk's signing secret"
    output = "\n".join(r.stdout + r.stderr for r in runs)
    assert "INFO" in output, "the processes logged at INFO"
    assert_no_secret(
        output,
        [
            zendesk.api_token,
            "wrong-token-98765",
            webhook_secret,
            SLACK_TOKEN,
            SIGNING_SECRET,
            ADMIN_KEY,
            settings.database_url.get_secret_value(),
        ],
    )


def test_a_secret_logged_by_mistake_is_masked_in_every_handler(settings):
    """A regression net: code that logs a secret (in the message, its arguments or an
    exception, through a handler set up after start) prints the mask instead."""
    script = textwrap.dedent(
        """
        import logging, sys
        from aitl.core import logs
        from aitl.core.settings import Settings
        logs.install(logs.settings_secrets(Settings()))
        handler = logging.StreamHandler(sys.stdout)  # configured late, as uvicorn does
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        for name in ("", "uvicorn.error"):
            logging.getLogger(name).addHandler(handler)
            logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger("uvicorn.error").propagate = False
        log = logging.getLogger("aitl.oops")
        log.info("connecting with token %s", sys.argv[1])
        log.warning("header Authorization: Bearer %s", sys.argv[2])
        logging.getLogger("uvicorn.error").error("db at %s", sys.argv[3])
        try:
            raise RuntimeError("Slack refused " + sys.argv[1])
        except RuntimeError:
            log.exception("call failed")
        print("an unregistered token: xoxp-9999999999-abcdefghijkl")
        logging.getLogger("x").info("an unregistered token: xoxp-9999999999-abcdefghijkl")
        """
    )
    database_url = settings.database_url.get_secret_value().replace("://", "://aitl:pw-4242@", 1)
    env = env_of(settings, AITL_SLACK_BOT_TOKEN=SLACK_TOKEN, DATABASE_URL=database_url)
    ran = subprocess.run(
        [sys.executable, "-c", script, SLACK_TOKEN, "bearer-value-1234567890", database_url],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert sum("[secret]" in line for line in lines) >= 5, ran.stdout
    logged = "\n".join(line for line in lines if not line.startswith("an unregistered"))
    assert_no_secret(logged, [SLACK_TOKEN, "bearer-value-1234567890", "pw-4242", "xoxp-9999"])
    assert "Slack refused [secret]" in logged and "Traceback" in logged
    assert "xoxp-9999999999" in ran.stdout, "print() is not logging: the control line"
