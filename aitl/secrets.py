"""Connector credentials encrypted at rest with Fernet; several keys allow rotation.

The key comes from ``AITL_SECRETS_KEY`` (comma-separated, newest first). Without it, a key
file is created once in the data folder with owner-only permissions, so a fresh install works.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from aitl import exceptions


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise exceptions.ConfigurationError("AITL_SECRETS_KEY holds no key")
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
        except ValueError as exc:
            raise exceptions.ConfigurationError(
                "AITL_SECRETS_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated"
            ) from exc

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(token)).decode()
        except InvalidToken as exc:
            raise exceptions.ConfigurationError(
                "a stored secret cannot be decrypted with AITL_SECRETS_KEY (was the key changed "
                "without keeping the old one after it?)"
            ) from exc

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt with the newest key."""
        return self._fernet.rotate(bytes(token))


def load_keys(configured: str | None, key_file: Path) -> list[str]:
    if configured:
        return [k for k in configured.split(",") if k.strip()]
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode())
    return [key_file.read_text().strip()]


class SecretStore:
    """Named credentials in ``connector_secrets``, encrypted with the SecretBox."""

    def __init__(self, db, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def put(self, name: str, value: str) -> None:
        with self.db.connection() as conn:
            conn.execute(
                "INSERT INTO connector_secrets (name, ciphertext) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext,"
                " updated_at = now()",
                (name, self.box.encrypt(value)),
            )

    def get(self, name: str) -> str | None:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT ciphertext FROM connector_secrets WHERE name = %s", (name,)
            ).fetchone()
        return self.box.decrypt(row[0]) if row else None

    def rotate_all(self) -> int:
        """Re-encrypt every secret with the newest key; returns how many."""
        with self.db.connection() as conn:
            rows = conn.execute("SELECT name, ciphertext FROM connector_secrets FOR UPDATE")
            rotated = [(self.box.rotate(c), n) for n, c in rows.fetchall()]
            for ciphertext, name in rotated:
                conn.execute(
                    "UPDATE connector_secrets SET ciphertext = %s, updated_at = now()"
                    " WHERE name = %s",
                    (ciphertext, name),
                )
        return len(rotated)


def secret_store(db, configured_keys: str | None, data_dir: Path) -> SecretStore:
    return SecretStore(db, SecretBox(load_keys(configured_keys, data_dir / "secrets.key")))
