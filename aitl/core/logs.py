"""Secrets never reach a log line: every line is masked as a handler formats it.

Masking wraps ``logging.Handler.format``, so it covers every handler of the process
(uvicorn's, procrastinate's, urllib3's, ours), including handlers configured after start-up,
and it masks the formatted text, traceback included. The record itself is left alone: a
formatter that reads ``record.args`` (uvicorn's access log unpacks method, path and status from
them) keeps working. Two nets: the secret values this process knows (settings, and connector
secrets as they are decrypted), and the shapes of credentials (Slack tokens, Authorization
headers, passwords in URLs) for values it was never told about.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import SecretStr

MASK = "[secret]"
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words
SHAPES = (
    re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{6,}"),  # Slack bot, user, app tokens
    re.compile(r"\bxapp-[A-Za-z0-9-]{6,}"),
    re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:bearer|basic|token)\s+[^\s'\",]+"),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9+/=._~-]{12,}"),
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in a URL
)


class SecretMask:
    """The secret values known to this process, and a way to mask them out of text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | SecretStr | None) -> None:
        fresh = {_plain(v) for v in values} - {None, ""} - self._values
        fresh = {v for v in fresh if v is not None and len(v) >= MIN_SECRET_LENGTH}
        if not fresh:
            return
        with self._lock:
            self._values = self._values | fresh
            longest_first = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in longest_first))

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        for shape in SHAPES:
            text = shape.sub(_masked_keeping_prefix, text)
        return text


def _masked_keeping_prefix(match: re.Match[str]) -> str:
    prefix = match.group(1) if match.re.groups else ""
    return f"{prefix}{MASK}" if prefix and prefix.lower().startswith("authorization") else MASK


def _plain(value: str | SecretStr | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


mask = SecretMask()
_installed = False


def install(secrets: Iterable[str | SecretStr | None] = ()) -> None:
    """Mask ``secrets`` (and credential shapes) in every log line formatted from now on."""
    global _installed
    mask.add(*secrets)
    if _installed:
        return
    plain_format = logging.Handler.format

    def masked_format(handler: logging.Handler, record: logging.LogRecord) -> str:
        return mask(plain_format(handler, record))

    logging.Handler.format = masked_format  # type: ignore[method-assign]
    _installed = True


def _password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:  # not a URL
        return ""


def settings_secrets(settings) -> list[str]:
    """Every secret a Settings object holds (its SecretStr fields), and the password of each
    one that is a URL, since a driver's error may quote it alone."""
    found = []
    for value in vars(settings).values():
        if isinstance(value, SecretStr):
            plain = value.get_secret_value()
            found.append(plain)
            found.append(_password(plain))
            found.extend(plain.split(",") if "," in plain else ())  # a list of keys
    return [v for v in found if v]
