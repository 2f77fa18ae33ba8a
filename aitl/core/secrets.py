"""Connector credentials encrypted at rest with Fernet; several keys allow rotation.

The key comes from ``AITL_SECRETS_KEY`` (comma-separated, newest first). Without it, a key
file is created once in the data folder with owner-only permissions, so a fresh install works.
``aitl secrets rotate`` moves every secret to the newest key (see :func:`rotate`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from aitl.core import exceptions, logs


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise exceptions.ConfigurationError("AITL_SECRETS_KEY holds no key")
        self.keys = list(keys)
        try:
            self._fernets = [Fernet(k.strip().encode()) for k in keys]
        except ValueError as exc:
            raise exceptions.ConfigurationError(
                "AITL_SECRETS_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated"
            ) from exc
        self._fernet = MultiFernet(self._fernets)

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def key_index(self, token: bytes) -> int | None:
        """Which key (0 = the newest) opens ``token``; None when none does."""
        for index, fernet in enumerate(self._fernets):
            try:
                fernet.decrypt(bytes(token))
            except InvalidToken:
                continue
            return index
        return None

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
    """The keys, newest first: from AITL_SECRETS_KEY, else the key file (one key per line)."""
    if configured:
        return [k for k in configured.split(",") if k.strip()]
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode())
    return key_file.read_text().split()


def write_key_file(key_file: Path, keys: list[str]) -> None:
    """Replace the key file atomically, owner-only: a crash leaves the old file or the new."""
    fresh = key_file.with_name(f".{key_file.name}.{os.getpid()}")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(keys) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(fresh, key_file)


class SecretStore:
    """Named credentials in ``connector_secrets``, encrypted with the SecretBox."""

    def __init__(self, db, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def put(self, name: str, value: str) -> None:
        logs.mask.add(value)
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
        if row is None:
            return None
        value = self.box.decrypt(row[0])
        logs.mask.add(value)  # from now on, this process's logs never show it
        return value

    def status(self) -> list[SecretStatus]:
        """Each stored secret's name, when it was set, and which key opens it (no values)."""
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT name, ciphertext, updated_at FROM connector_secrets ORDER BY name"
            ).fetchall()
        return [SecretStatus(n, updated, self.box.key_index(c)) for n, c, updated in rows]

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


@dataclass(frozen=True)
class SecretStatus:
    name: str
    updated_at: datetime
    key_index: int | None  # 0: the newest key; None: no key opens it


@dataclass(frozen=True)
class Rotation:
    rotated: int  # secrets re-encrypted with the newest key
    new_key: bool  # a key was generated (key file); False: the first of AITL_SECRETS_KEY
    older_keys: int  # keys still configured besides the newest one


def key_file_of(data_dir: Path) -> Path:
    return data_dir / "secrets.key"


def secret_store(db, configured_keys: str | None, data_dir: Path) -> SecretStore:
    return SecretStore(db, SecretBox(load_keys(configured_keys, key_file_of(data_dir))))


def rotate(db, configured_keys: str | None, data_dir: Path) -> Rotation:
    """Re-encrypt every stored secret with the newest key.

    With AITL_SECRETS_KEY the operator has put the new key first; the older ones can be
    dropped once this returns. With the key file, a new key is generated and written first
    (next to the old one, so a crash half-way loses nothing), then every secret moves to it
    in one transaction, then the old key is removed from the file.
    """
    if configured_keys:
        keys = load_keys(configured_keys, key_file_of(data_dir))
        rotated = SecretStore(db, SecretBox(keys)).rotate_all()
        return Rotation(rotated, new_key=False, older_keys=len(keys) - 1)
    key_file = key_file_of(data_dir)
    keys = [Fernet.generate_key().decode(), *load_keys(None, key_file)]
    write_key_file(key_file, keys)
    rotated = SecretStore(db, SecretBox(keys)).rotate_all()
    write_key_file(key_file, keys[:1])
    return Rotation(rotated, new_key=True, older_keys=0)
