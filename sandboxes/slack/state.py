"""The in-memory Slack workspace behind the local Slack sandbox (``sandboxes.slack.server``).

Messages, views and files are kept as the JSON objects the Web API returns, so the HTTP
layer only parses parameters and wraps results. Each Web API operation raises
:class:`MethodError` with Slack's error code, which the HTTP layer answers as
``{"ok": false, "error": code}``. The payload builders make what Slack sends to an app
(interactivity, slash commands, events) from this state, and sign it as Slack does.

SlackSandboxError
├── MethodError            (a Web API method answers ``ok: false``)
├── ResponseUrlRejected    (a response_url answers 404)
├── UploadNotFound         (an upload URL answers 404)
└── ElementNotFound        (a payload builder found no such element)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hmac
import itertools
import json
import mimetypes
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from slack_sdk.signature import SignatureVerifier

from bot.exceptions import BotError
from sandboxes import faults
from sandboxes.faults import FaultLog

Json = dict[str, Any]
P = ParamSpec("P")
R = TypeVar("R")

# --- the default workspace: obvious names so tests can refer to them ------------------------
BOT_TOKEN = "xoxb-sandbox"
SIGNING_SECRET = "sandbox-signing-secret"
VERIFICATION_TOKEN = "sandbox-verification-token"
TEAM_ID = "T0SANDBOX"
TEAM_DOMAIN = "aitl-sandbox"
TEAM_NAME = "AITL Sandbox"
APP_ID = "A0SANDBOX"
BOT_ID = "B0SANDBOX"
BOT_USER_ID = "U0SANDBOXBOT"
BOT_NAME = "aitl"
AGENT_ALICE = "U0ALICE"
AGENT_BOB = "U0BOB"
SUPPORT_CHANNEL = "C0SUPPORT"
SUPPORT_CHANNEL_NAME = "support"
AGENTS_GROUP = "S0AGENTS"

# --- Slack's limits ------------------------------------------------------------------------
START_TS = 1763769600  # first message: "1763769600.000100"
TS_STEP_US = 100
MAX_TEXT = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_MODAL_TITLE = 24
MAX_VIEW_STACK = 3
MAX_CONVERSATION_USERS = 8
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL_S = 30 * 60
TRIGGER_TTL_S = 3.0
JSON_PARAMS = ("blocks", "attachments", "metadata", "view", "files")


class SlackSandboxError(BotError):
    """The Slack sandbox cannot do what was asked."""


class MethodError(SlackSandboxError):
    """A Web API method answers ``ok: false`` with Slack's error code.

    Readers raise it too (``channel_not_found``, ``message_not_found``), with the code
    Slack would use, so tests and the API speak one vocabulary."""

    def __init__(self, error: str, messages: Iterable[str] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.messages = list(messages)

    def body(self) -> Json:
        body: Json = {"ok": False, "error": self.error}
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return body


class ResponseUrlRejected(SlackSandboxError):
    """The response_url is unknown, expired or used up; Slack answers 404."""


class UploadNotFound(SlackSandboxError):
    """No upload was started for this file id."""


class ElementNotFound(SlackSandboxError):
    """The message or view has no interactive element with that action_id and block_id."""


@dataclass
class Fault(faults.Fault):
    """An injected failure or delay for the next calls of one Web API method (``*``: any)."""

    method: str

    def matches(self, method: str) -> bool:
        return self.method in (method, "*")


@dataclass(frozen=True)
class RecordedCall:
    """One call the sandbox answered: Web API methods, uploads and response_url posts."""

    method: str
    params: Json
    status: int
    time: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class ResponseUrl:
    """A response_url: where it came from and how often it was used (Slack allows 5)."""

    url_id: str
    channel: str
    user: str
    message_ts: str | None
    is_ephemeral: bool
    created: float
    uses: int = 0
    last_ts: str | None = None


@dataclass
class Trigger:
    """A trigger id handed out with an interaction; views.open may use it once, for 3 s."""

    user: str
    issued: float
    used: bool = False


def decode_json_params(params: Json) -> Json:
    """Decode the parameters clients send as JSON strings in form bodies (blocks, view...);
    a string that is not JSON is left as is for the method to reject."""
    decoded = dict(params)
    for name in JSON_PARAMS:
        if isinstance(decoded.get(name), str):
            with contextlib.suppress(ValueError):
                decoded[name] = json.loads(decoded[name])
    return decoded


def flag(value: Any) -> bool:
    """A boolean parameter: JSON true, or the "1"/"true" that form bodies carry."""
    return value is True or str(value).lower() in ("1", "true")


def encode_form(fields: dict[str, str]) -> bytes:
    """A form body, as Slack sends slash commands."""
    return urllib.parse.urlencode(fields).encode()


def encode_interactivity(payload: Json) -> bytes:
    """An interactivity body: the JSON payload in a ``payload`` form field."""
    return encode_form({"payload": json.dumps(payload, separators=(",", ":"))})


def encode_event(payload: Json) -> bytes:
    """An Events API body: plain JSON."""
    return json.dumps(payload, separators=(",", ":")).encode()


def content_type_of(body: bytes) -> str:
    """Events are JSON; interactivity and slash commands are form-encoded."""
    if body.lstrip().startswith(b"{"):
        return "application/json"
    return "application/x-www-form-urlencoded"


def sign(signing_secret: str, body: bytes, timestamp: int) -> str:
    """``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``, by slack_sdk's own verifier."""
    verifier = SignatureVerifier(signing_secret)
    return verifier.generate_signature(timestamp=str(timestamp), body=body.decode())


def _text_length(obj: Any) -> int:
    return len(obj.get("text", "")) if isinstance(obj, dict) else 0


def _block_problems(blocks: list[Any], limit: int) -> list[str]:
    """What Slack's block validation says about ``blocks`` (empty when they are fine)."""
    if len(blocks) > limit:
        return [
            f"[ERROR] must provide an array of no more than {limit} items [json-pointer:/blocks]"
        ]
    problems = []
    for index, block in enumerate(blocks):
        pointer = f"[json-pointer:/blocks/{index}"
        if not isinstance(block, dict) or not block.get("type"):
            problems.append(f"[ERROR] missing required field: type {pointer}]")
        elif block["type"] == "section" and _text_length(block.get("text")) > MAX_SECTION_TEXT:
            problems.append(f"[ERROR] must be less than 3001 characters {pointer}/text/text]")
        elif block["type"] == "header" and _text_length(block.get("text")) > MAX_HEADER_TEXT:
            problems.append(f"[ERROR] must be less than 151 characters {pointer}/text/text]")
    return problems


def _ts_key(message: Json) -> tuple[int, ...]:
    """Slack timestamps sort as (seconds, micros)."""
    return tuple(int(part) for part in str(message["ts"]).split("."))


def _broadcast(message: Json) -> bool:
    return message.get("subtype") == "thread_broadcast"


def _iter_elements(blocks: list[Json]) -> Iterable[tuple[Json, Json]]:
    """(block, element) for every interactive element: accessories, actions, inputs."""
    for block in blocks:
        candidates = [block.get("accessory"), block.get("element"), *block.get("elements", [])]
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id"):
                yield block, element


def _changes(
    method: Callable[Concatenate[SlackState, P], R],
) -> Callable[Concatenate[SlackState, P], R]:
    """Bump :attr:`SlackState.version` after ``method``, so a page polling the state redraws
    only when something changed. Also after a failure: a refused call may already have opened
    a DM, and one extra redraw costs nothing."""

    @functools.wraps(method)
    def changing(self: SlackState, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            finally:
                self._version += 1

    return changing


class SlackState:
    """A thread-safe, in-memory Slack workspace seen by one bot.

    Every public method takes the lock and returns copies, so the HTTP server's thread and
    a test's thread never see or cause half-made changes.
    """

    def __init__(
        self,
        *,
        bot_token: str = BOT_TOKEN,
        signing_secret: str = SIGNING_SECRET,
        team_id: str = TEAM_ID,
        team_domain: str = TEAM_DOMAIN,
        team_name: str = TEAM_NAME,
        app_id: str = APP_ID,
        bot_id: str = BOT_ID,
        bot_user_id: str = BOT_USER_ID,
        bot_name: str = BOT_NAME,
        verification_token: str = VERIFICATION_TOKEN,
        base_url: str = "http://127.0.0.1",
        trigger_ttl_s: float = TRIGGER_TTL_S,
        clock: Callable[[], float] = time.time,
        seed: bool = True,
    ) -> None:
        self.bot_token = bot_token
        self.signing_secret = signing_secret
        self.team_id, self.team_domain, self.team_name = team_id, team_domain, team_name
        self.app_id, self.bot_id, self.bot_user_id = app_id, bot_id, bot_user_id
        self.verification_token = verification_token
        self.base_url = base_url  # where response_urls point; ``bot.sandbox.serve`` sets it
        self.trigger_ttl_s = trigger_ttl_s
        self._clock = clock
        self._lock = threading.RLock()
        self._version = 0
        self._counters: dict[str, itertools.count[int]] = {}
        self._ts_us = START_TS * 1_000_000
        self._users: dict[str, Json] = {}
        self._channels: dict[str, Json] = {}
        self._members: dict[str, list[str]] = {}
        self._dms: dict[frozenset[str], str] = {}
        self._usergroups: dict[str, Json] = {}
        self._messages: dict[str, dict[str, Json]] = {}
        self._edits: dict[tuple[str, str], list[Json]] = {}
        self._ephemeral: list[Json] = []
        self._views: dict[str, Json] = {}
        self._stacks: dict[str, list[str]] = {}
        self._homes: dict[str, str] = {}
        self._triggers: dict[str, Trigger] = {}
        self._response_urls: dict[str, ResponseUrl] = {}
        self._files: dict[str, Json] = {}
        self._contents: dict[str, bytes | None] = {}
        self._log: FaultLog[Fault, RecordedCall] = FaultLog(self._lock)
        self.add_user(bot_user_id, bot_name, is_bot=True)
        if seed:
            self._seed()

    def _seed(self) -> None:
        """Two agents in #support and an @agents group: enough for the bot's surfaces."""
        self.add_user(AGENT_ALICE, "alice", "alice@sandbox.example", real_name="Alice Agent")
        self.add_user(AGENT_BOB, "bob", "bob@sandbox.example", real_name="Bob Agent")
        self.add_channel(SUPPORT_CHANNEL, SUPPORT_CHANNEL_NAME, members=(AGENT_ALICE, AGENT_BOB))
        self.add_usergroup(AGENTS_GROUP, "agents", (AGENT_ALICE, AGENT_BOB))

    def _next_id(self, prefix: str) -> str:
        counter = self._counters.setdefault(prefix, itertools.count(1))
        return f"{prefix}{next(counter):010d}"

    def _next_ts(self) -> str:
        """Unique and increasing, in Slack's ``seconds.micros`` form."""
        with self._lock:
            self._ts_us += TS_STEP_US
            return f"{self._ts_us // 1_000_000}.{self._ts_us % 1_000_000:06d}"

    def now(self) -> float:
        return self._clock()

    @property
    def version(self) -> int:
        """Grows with every change to what people see (messages, views, files...)."""
        with self._lock:
            return self._version

    def authenticate(self, token: str | None) -> str | None:
        """None when ``token`` is the bot's, else Slack's error code."""
        if not token:
            return "not_authed"
        return None if hmac.compare_digest(token, self.bot_token) else "invalid_auth"

    # --- users, channels, groups ----------------------------------------------------------

    @_changes
    def add_user(
        self,
        user_id: str,
        name: str,
        email: str | None = None,
        is_admin: bool = False,
        deleted: bool = False,
        *,
        real_name: str | None = None,
        is_bot: bool = False,
    ) -> Json:
        profile: Json = {"real_name": real_name or name, "display_name": name, "team": self.team_id}
        if email:
            profile["email"] = email
        user = {"id": user_id, "team_id": self.team_id, "name": name, "deleted": deleted}
        user |= {"real_name": real_name or name, "tz": "Etc/UTC", "is_admin": is_admin}
        user |= {"is_owner": False, "is_bot": is_bot, "is_app_user": False, "profile": profile}
        user["updated"] = int(self._clock())
        if is_bot:
            profile["bot_id"], profile["api_app_id"] = self.bot_id, self.app_id
        with self._lock:
            self._users[user_id] = user
            return copy.deepcopy(user)

    @_changes
    def add_channel(
        self,
        channel_id: str,
        name: str,
        members: Iterable[str] = (),
        bot_member: bool = True,
        *,
        is_private: bool = False,
    ) -> Json:
        wanted = [*members, *([self.bot_user_id] if bot_member else [])]
        with self._lock:
            for user_id in wanted:
                self._user(user_id)
            channel = {"id": channel_id, "name": name, "name_normalized": name}
            channel |= {"is_channel": not is_private, "is_group": False, "is_im": False}
            channel |= {"is_mpim": False, "is_private": is_private, "is_archived": False}
            channel |= {"created": int(self._clock()), "context_team_id": self.team_id}
            self._channels[channel_id] = channel
            self._members[channel_id] = list(dict.fromkeys(wanted))
            self._messages.setdefault(channel_id, {})
            return copy.deepcopy(channel)

    @_changes
    def add_member(self, channel_id: str, user_id: str) -> None:
        with self._lock:
            self._user(user_id)
            members = self._members[self._channel(channel_id)]
            if user_id not in members:
                members.append(user_id)

    @_changes
    def add_usergroup(self, usergroup_id: str, handle: str, users: Iterable[str]) -> Json:
        group = {"id": usergroup_id, "team_id": self.team_id, "handle": handle, "name": handle}
        group |= {"is_usergroup": True, "date_delete": 0, "users": list(users)}
        with self._lock:
            self._usergroups[usergroup_id] = group
            return copy.deepcopy(group)

    def _user(self, user_id: str) -> Json:
        if user_id not in self._users:
            raise MethodError("user_not_found")
        return self._users[user_id]

    def _channel(self, ref: str) -> str:
        """A channel id from an id, a ``#name``, or a user id (their DM, as Slack allows)."""
        if ref in self._channels:
            return ref
        for channel in self._channels.values():
            if not channel["is_im"] and channel["name"] == ref.removeprefix("#"):
                return channel["id"]
        if ref in self._users:
            return self._open_dm([ref])[0]
        raise MethodError("channel_not_found")

    def user(self, user_id: str) -> Json:
        """``users.info``."""
        with self._lock:
            return copy.deepcopy(self._user(user_id))

    def user_by_email(self, email: str) -> Json:
        """``users.lookupByEmail``: deleted users are not found, as in Slack."""
        with self._lock:
            for user in self._users.values():
                found = (user["profile"].get("email") or "").lower() == email.lower()
                if found and email and not user["deleted"]:
                    return copy.deepcopy(user)
            raise MethodError("users_not_found")

    def usergroup_users(self, usergroup_id: str) -> list[str]:
        with self._lock:
            if usergroup_id not in self._usergroups:
                raise MethodError("no_such_subteam")
            return list(self._usergroups[usergroup_id]["users"])

    def members(self, channel: str) -> list[str]:
        with self._lock:
            return list(self._members[self._channel(channel)])

    def open_conversation(self, users: list[str]) -> tuple[str, bool]:
        """``conversations.open``: (channel id, already open). One DM per set of users."""
        if not users:
            raise MethodError("users_list_not_supplied")
        if len(users) > MAX_CONVERSATION_USERS:
            raise MethodError("too_many_users")
        with self._lock:
            for user_id in users:
                self._user(user_id)
            return self._open_dm(users)

    def _open_dm(self, users: list[str]) -> tuple[str, bool]:
        key = frozenset(users) - {self.bot_user_id}
        if key in self._dms:
            return self._dms[key], True
        channel_id = self._next_id("D" if len(key) == 1 else "G")
        self.add_channel(channel_id, channel_id, members=sorted(key))
        kind = "is_im" if len(key) == 1 else "is_mpim"
        self._channels[channel_id] |= {"is_channel": False, kind: True, "is_private": True}
        if len(key) == 1:
            self._channels[channel_id]["user"] = next(iter(key))
        self._dms[key] = channel_id
        return channel_id, False

    # --- messages -------------------------------------------------------------------------

    def _content(self, text: Any, blocks: Any, attachments: Any = None) -> tuple[str, list | None]:
        """Validate a message's text and blocks as chat.postMessage does."""
        if blocks is not None and not isinstance(blocks, list):
            raise MethodError("invalid_blocks_format")
        if not (text or blocks or attachments):
            raise MethodError("no_text")
        text = "" if text is None else str(text)
        if len(text) > MAX_TEXT:
            raise MethodError("msg_too_long")
        if blocks is not None:
            problems = _block_problems(blocks, MAX_MESSAGE_BLOCKS)
            if problems:
                raise MethodError("invalid_blocks", problems)
            blocks = self._with_block_ids(blocks)
        return text, blocks

    @staticmethod
    def _with_block_ids(blocks: list[Json]) -> list[Json]:
        """Slack gives every block without a ``block_id`` a random one."""
        return [{"block_id": secrets.token_urlsafe(3)} | copy.deepcopy(b) for b in blocks]

    def _bot_message(self, text: str, blocks: list | None, ts: str) -> Json:
        message = {"user": self.bot_user_id, "type": "message", "ts": ts, "bot_id": self.bot_id}
        message |= {"app_id": self.app_id, "text": text, "team": self.team_id}
        name = self._users[self.bot_user_id]["name"]
        profile = {"id": self.bot_id, "app_id": self.app_id, "name": name, "deleted": False}
        message["bot_profile"] = profile | {"team_id": self.team_id}
        if blocks is not None:
            message["blocks"] = blocks
        return message

    @_changes
    def post_message(
        self,
        channel: str,
        *,
        text: Any = None,
        blocks: Any = None,
        thread_ts: str | None = None,
        metadata: Any = None,
        attachments: Any = None,
        reply_broadcast: bool = False,
        check_membership: bool = True,
    ) -> tuple[str, Json]:
        """``chat.postMessage`` as the bot: (channel id, message)."""
        with self._lock:
            channel_id = self._channel(channel)
            if check_membership and self.bot_user_id not in self._members[channel_id]:
                raise MethodError("not_in_channel")
            text, blocks = self._content(text, blocks, attachments)
            root = self._thread_root(channel_id, thread_ts) if thread_ts else None
            message = self._bot_message(text, blocks, self._next_ts())
            if attachments:
                message["attachments"] = attachments
            if isinstance(metadata, dict):
                message["metadata"] = metadata
            self._store(channel_id, message, root, reply_broadcast)
            return channel_id, copy.deepcopy(message)

    @_changes
    def post_as_user(
        self, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> Json:
        """A person writes in a channel (for events and threads the bot did not start)."""
        with self._lock:
            channel_id, author = self._channel(channel), self._user(user)
            root = self._thread_root(channel_id, thread_ts) if thread_ts else None
            message = {"type": "message", "user": author["id"], "text": text}
            message |= {"ts": self._next_ts(), "team": self.team_id}
            self._store(channel_id, message, root, False)
            return copy.deepcopy(message)

    def _thread_root(self, channel_id: str, thread_ts: str) -> Json:
        parent = self._messages[channel_id].get(thread_ts)
        if parent is None:
            raise MethodError("thread_not_found")
        return self._messages[channel_id][parent.get("thread_ts", thread_ts)]

    def _store(self, channel_id: str, message: Json, root: Json | None, broadcast: bool) -> None:
        if root is not None:
            message["thread_ts"], message["parent_user_id"] = root["ts"], root.get("user")
            if broadcast:
                message["subtype"] = "thread_broadcast"
            replies = root.setdefault("reply_users", [])
            if message.get("user") not in replies:
                replies.append(message.get("user"))
            root["thread_ts"], root["latest_reply"] = root["ts"], message["ts"]
            root["reply_count"] = root.get("reply_count", 0) + 1
            root["reply_users_count"] = len(replies)
        self._messages[channel_id][message["ts"]] = message

    @_changes
    def update_message(
        self,
        channel: str,
        ts: str,
        *,
        text: Any = None,
        blocks: Any = None,
        attachments: Any = None,
    ) -> tuple[str, Json]:
        """``chat.update``: text and blocks left out are kept, as in Slack."""
        with self._lock:
            channel_id = self._channel(channel)
            message = self._message(channel_id, ts)
            if message.get("user") != self.bot_user_id:
                raise MethodError("cant_update_message")
            new_text = message.get("text") if text is None else text
            new_blocks = message.get("blocks") if blocks is None else blocks
            new_text, new_blocks = self._content(new_text, new_blocks, attachments)
            self._edits.setdefault((channel_id, ts), []).append(copy.deepcopy(message))
            message["text"] = new_text
            if new_blocks is not None:
                message["blocks"] = new_blocks
            if attachments is not None:
                message["attachments"] = attachments
            message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
            return channel_id, copy.deepcopy(message)

    @_changes
    def delete_message(self, channel: str, ts: str) -> None:
        with self._lock:
            channel_id = self._channel(channel)
            self._message(channel_id, ts)
            del self._messages[channel_id][ts]

    def _message(self, channel_id: str, ts: str) -> Json:
        message = self._messages[channel_id].get(ts)
        if message is None:
            raise MethodError("message_not_found")
        return message

    def messages(self, channel: str) -> list[Json]:
        """The channel's history as people see it: thread replies only when broadcast."""
        with self._lock:
            found = self._messages[self._channel(channel)].values()
            top = [
                m
                for m in found
                if m.get("thread_ts", m["ts"]) == m["ts"] or m.get("subtype") == "thread_broadcast"
            ]
            return copy.deepcopy(top)

    def message(self, channel: str, ts: str) -> Json:
        with self._lock:
            return copy.deepcopy(self._message(self._channel(channel), ts))

    def replies(self, channel: str, thread_ts: str) -> list[Json]:
        """The replies in a thread, oldest first, without the parent."""
        with self._lock:
            found = self._messages[self._channel(channel)].values()
            return copy.deepcopy(
                [m for m in found if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts]
            )

    def edit_history(self, channel: str, ts: str) -> list[Json]:
        """Earlier versions of a message, oldest first (chat.update keeps no history in
        Slack; tests want to see what was replaced)."""
        with self._lock:
            return copy.deepcopy(self._edits.get((self._channel(channel), ts), []))

    # --- ephemeral messages ---------------------------------------------------------------

    @_changes
    def post_ephemeral(
        self,
        channel: str,
        user: str,
        *,
        text: Any = None,
        blocks: Any = None,
        thread_ts: str | None = None,
        attachments: Any = None,
    ) -> str:
        """``chat.postEphemeral``: the message ts. Stored with ``channel`` and ``recipient``."""
        with self._lock:
            channel_id = self._channel(channel)
            self._user(user)
            if self.bot_user_id not in self._members[channel_id]:
                raise MethodError("not_in_channel")
            if user not in self._members[channel_id]:
                raise MethodError("user_not_in_channel")
            text, blocks = self._content(text, blocks, attachments)
            return self._add_ephemeral(channel_id, user, text, blocks, thread_ts)

    def _add_ephemeral(
        self, channel_id: str, user: str, text: str, blocks: list | None, thread_ts: str | None
    ) -> str:
        message = self._bot_message(text, blocks, self._next_ts())
        message |= {"channel": channel_id, "recipient": user}
        if thread_ts:
            message["thread_ts"] = thread_ts
        self._ephemeral.append(message)
        return message["ts"]

    def ephemeral(self, channel: str | None = None, user: str | None = None) -> list[Json]:
        """Ephemeral messages still shown, each with ``channel`` and ``recipient``."""
        with self._lock:
            channel_id = None if channel is None else self._channel(channel)
            found = [
                m
                for m in self._ephemeral
                if channel_id in (None, m["channel"]) and user in (None, m["recipient"])
            ]
            return copy.deepcopy(found)

    def _find_ephemeral(self, channel_id: str, user: str, ts: str | None) -> Json | None:
        for message in self._ephemeral:
            if (message["channel"], message["recipient"], message["ts"]) == (channel_id, user, ts):
                return message
        return None

    # --- views ----------------------------------------------------------------------------

    def issue_trigger(self, user: str) -> str:
        """A trigger id for ``user``, as an interaction carries: usable once, for 3 s."""
        with self._lock:
            trigger_id = f"{int(self._clock() * 1000)}.{next(self._counter('trigger'))}"
            trigger_id += f".{secrets.token_hex(16)}"
            self._triggers[trigger_id] = Trigger(user, self._clock())
            return trigger_id

    def _counter(self, name: str) -> itertools.count[int]:
        return self._counters.setdefault(name, itertools.count(1))

    def _take_trigger(self, trigger_id: str) -> str:
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise MethodError("invalid_trigger_id")
        if trigger.used:
            raise MethodError("exchanged_trigger_id")
        if self._clock() - trigger.issued > self.trigger_ttl_s:
            raise MethodError("expired_trigger_id")
        trigger.used = True
        return trigger.user

    def _check_view(self, view: Any, kind: str) -> None:
        if not isinstance(view, dict):
            raise MethodError("invalid_arguments", ["[ERROR] missing required field: view"])
        problems = []
        if view.get("type") != kind:
            problems.append(f"[ERROR] must be '{kind}' [json-pointer:/view/type]")
        blocks = view.get("blocks")
        if not isinstance(blocks, list):
            problems.append("[ERROR] missing required field: blocks [json-pointer:/view/blocks]")
        else:
            problems += _block_problems(blocks, MAX_VIEW_BLOCKS)
        if kind == "modal":
            problems += self._modal_problems(view)
        if problems:
            raise MethodError("invalid_arguments", problems)

    @staticmethod
    def _modal_problems(view: Json) -> list[str]:
        title = view.get("title")
        if not isinstance(title, dict) or not title.get("text"):
            return ["[ERROR] missing required field: title [json-pointer:/view/title]"]
        if len(title["text"]) > MAX_MODAL_TITLE:
            return ["[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"]
        has_input = any(b.get("type") == "input" for b in view.get("blocks") or [])
        if has_input and not view.get("submit"):
            return ["[ERROR] submit is required when an input block is within the blocks"]
        return []

    def _new_view(self, view: Json, view_id: str, root: str, previous: str | None) -> Json:
        stored = {"id": view_id, "team_id": self.team_id, "type": view["type"]}
        stored["blocks"] = self._with_block_ids(view["blocks"])
        stored |= {"private_metadata": view.get("private_metadata", "")}
        stored |= {"callback_id": view.get("callback_id", ""), "state": {"values": {}}}
        stored |= {"hash": f"{int(self._clock())}.{secrets.token_urlsafe(6)}"}
        for key in ("title", "close", "submit"):
            stored[key] = view.get(key)
        stored |= {"clear_on_close": flag(view.get("clear_on_close"))}
        stored |= {"notify_on_close": flag(view.get("notify_on_close"))}
        stored |= {"previous_view_id": previous, "root_view_id": root, "app_id": self.app_id}
        stored |= {"external_id": view.get("external_id", "")}
        stored |= {"app_installed_team_id": self.team_id, "bot_id": self.bot_id}
        self._views[view_id] = stored
        return stored

    def _check_external_id(self, view: Json, keep: str | None = None) -> None:
        external = view.get("external_id")
        taken = [v for v in self._views.values() if external and v["external_id"] == external]
        if any(v["id"] != keep for v in taken):
            raise MethodError("duplicate_external_id")

    @_changes
    def open_view(self, trigger_id: str, view: Any) -> Json:
        """``views.open``: a new modal stack for the user the trigger came from."""
        with self._lock:
            self._check_view(view, "modal")
            self._check_external_id(view)
            user = self._take_trigger(trigger_id)
            view_id = self._next_id("V")
            stored = self._new_view(view, view_id, view_id, None)
            self._stacks[user] = [view_id]
            return copy.deepcopy(stored)

    @_changes
    def push_view(self, trigger_id: str, view: Any) -> Json:
        """``views.push``: on top of the user's open modal (at most 3 in a stack)."""
        with self._lock:
            trigger = self._triggers.get(trigger_id)
            self._check_push(trigger.user if trigger else None, view)
            return copy.deepcopy(self._push(self._take_trigger(trigger_id), view))

    def _check_push(self, user: str | None, view: Any) -> None:
        """Checked before the trigger is spent, so a refused push leaves it usable."""
        self._check_view(view, "modal")
        self._check_external_id(view)
        if len(self._stacks.get(user or "", [])) >= MAX_VIEW_STACK:
            raise MethodError("push_limit_reached")

    def _push(self, user: str, view: Json) -> Json:
        stack = self._stacks.get(user, [])
        view_id = self._next_id("V")
        root, previous = (stack[0], stack[-1]) if stack else (view_id, None)
        stored = self._new_view(view, view_id, root, previous)
        self._stacks[user] = [*stack, view_id]
        return stored

    @_changes
    def update_view(
        self,
        view: Any,
        *,
        view_id: str | None = None,
        external_id: str | None = None,
        hash: str | None = None,
    ) -> Json:
        """``views.update``: a stale ``hash`` is a ``hash_conflict``; the id is kept."""
        with self._lock:
            old = self._view_by(view_id, external_id)
            self._check_view(view, old["type"])
            self._check_external_id(view, keep=old["id"])
            if hash and hash != old["hash"]:
                raise MethodError("hash_conflict")
            stored = self._new_view(view, old["id"], old["root_view_id"], old["previous_view_id"])
            return copy.deepcopy(stored)

    def _view_by(self, view_id: str | None, external_id: str | None) -> Json:
        if not (view_id or external_id):
            raise MethodError("invalid_arguments", ["[ERROR] view_id or external_id required"])
        for view in self._views.values():
            if view["id"] == view_id or (external_id and view["external_id"] == external_id):
                return view
        raise MethodError("not_found")

    @_changes
    def publish_home(self, user: str, view: Any, hash: str | None = None) -> Json:
        """``views.publish``: the user's Home tab (the view keeps its id across publishes)."""
        with self._lock:
            self._user(user)
            self._check_view(view, "home")
            old = self._views.get(self._homes.get(user, ""))
            if old is not None and hash and hash != old["hash"]:
                raise MethodError("hash_conflict")
            view_id = old["id"] if old else self._next_id("V")
            stored = self._new_view(view, view_id, view_id, None)
            self._homes[user] = view_id
            return copy.deepcopy(stored)

    def view(self, view_id: str) -> Json:
        with self._lock:
            return copy.deepcopy(self._view_by(view_id, None))

    def open_views(self, user: str) -> list[Json]:
        """The user's modal stack, bottom first."""
        with self._lock:
            return copy.deepcopy([self._views[v] for v in self._stacks.get(user, [])])

    def home(self, user: str) -> Json | None:
        with self._lock:
            view_id = self._homes.get(user)
            return None if view_id is None else copy.deepcopy(self._views[view_id])

    @_changes
    def close_view(self, user: str, view_id: str | None = None, *, clear: bool = False) -> None:
        """Close the top modal (down to ``view_id`` if given), or all with ``clear``; what
        Slack does on a view_submission ack without ``response_action``, or on Cancel."""
        with self._lock:
            stack = self._stacks.get(user, [])
            if clear or (view_id is not None and view_id == (stack or [None])[0]):
                stack.clear()
            elif view_id is not None and view_id in stack:
                del stack[stack.index(view_id) :]
            elif stack:
                stack.pop()

    @_changes
    def answer_submission(self, user: str, view_id: str, answer: Any) -> Json:
        """Do what Slack does with an app's ack of ``user``'s view_submission: ``errors``
        (returned; the view stays open), ``update``, ``push``, ``clear``, or nothing (close
        the submitted view and those above it). A bad answer raises :class:`MethodError`."""
        answer = answer if isinstance(answer, dict) else {}
        action = answer.get("response_action")
        with self._lock:
            if view_id not in self._stacks.get(user, []):
                raise MethodError("not_found")
            if action == "errors":
                errors = answer.get("errors")
                if not isinstance(errors, dict) or not errors:
                    raise MethodError("invalid_errors")
                return {str(k): str(v) for k, v in errors.items()}
            if action == "update":
                self.update_view(answer.get("view"), view_id=view_id)
            elif action == "push":
                self._check_push(user, answer.get("view"))
                self._push(user, answer["view"])
            elif action == "clear":
                self.close_view(user, clear=True)
            elif action in (None, ""):
                self.close_view(user, view_id)
            else:
                raise MethodError("invalid_response_action")
            return {}

    # --- files ----------------------------------------------------------------------------

    @_changes
    def begin_upload(self, filename: str, length: Any, alt_txt: str | None = None) -> str:
        """``files.getUploadURLExternal``: the file id the upload URL is for."""
        if not filename:
            raise MethodError("invalid_arguments", ["[ERROR] missing required field: filename"])
        try:
            size = int(length)
        except (TypeError, ValueError) as exc:
            raise MethodError("invalid_arguments", ["[ERROR] invalid length"]) from exc
        with self._lock:
            file_id = self._next_id("F")
            self._files[file_id] = {"id": file_id, "name": filename, "size": size}
            if alt_txt:
                self._files[file_id]["alt_txt"] = alt_txt
            self._contents[file_id] = None
            return file_id

    @_changes
    def receive_upload(self, file_id: str, data: bytes) -> None:
        with self._lock:
            if file_id not in self._contents or self._files[file_id].get("created"):
                raise UploadNotFound(f"no upload for {file_id}")
            self._contents[file_id] = data

    @_changes
    def complete_upload(
        self,
        files: Any,
        channels: list[str],
        initial_comment: str | None = None,
        thread_ts: str | None = None,
    ) -> list[Json]:
        """``files.completeUploadExternal``: finish the files and share them in one message
        per channel (Slack shares a moment later; the sandbox at once, for tests)."""
        if not isinstance(files, list) or not files:
            raise MethodError("invalid_arguments", ["[ERROR] missing required field: files"])
        with self._lock:
            ids = [self._uploaded(f) for f in files]
            targets = [self._channel(c) for c in channels]
            for channel_id in targets:
                if self.bot_user_id not in self._members[channel_id]:
                    raise MethodError("not_in_channel")
            done = [
                self._finish_file(i, f.get("title"), targets)
                for i, f in zip(ids, files, strict=True)
            ]
            for channel_id in targets:
                root = self._thread_root(channel_id, thread_ts) if thread_ts else None
                message = self._bot_message(initial_comment or "", None, self._next_ts())
                message |= {"subtype": "file_share", "files": copy.deepcopy(done), "upload": False}
                self._store(channel_id, message, root, False)
            return copy.deepcopy(done)

    def _uploaded(self, spec: Any) -> str:
        file_id = spec.get("id") if isinstance(spec, dict) else None
        if file_id not in self._contents or self._contents[file_id] is None:
            raise MethodError("file_not_found")
        return file_id

    def _finish_file(self, file_id: str, title: str | None, channels: list[str]) -> Json:
        file, now = self._files[file_id], int(self._clock())
        name = file["name"]
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        filetype = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        private = f"{self.base_url}/files-pri/{self.team_id}-{file_id}/{urllib.parse.quote(name)}"
        file |= {"created": now, "timestamp": now, "title": title or name}
        file |= {"mimetype": mimetype, "filetype": filetype, "pretty_type": filetype.upper()}
        file |= {"user": self.bot_user_id, "user_team": self.team_id, "editable": False}
        file |= {"size": len(self._contents[file_id] or b""), "mode": "hosted"}
        file |= {"is_external": False, "external_type": "", "is_public": True}
        file |= {"public_url_shared": False, "display_as_bot": False, "username": ""}
        file |= {"url_private": private, "url_private_download": private}
        file |= {"permalink": f"https://{self.team_domain}.slack.com/files/{file_id}"}
        file |= {"channels": [c for c in channels if c.startswith("C")], "groups": []}
        file |= {"ims": [c for c in channels if not c.startswith("C")], "comments_count": 0}
        return file

    def files(self) -> list[Json]:
        """Completed files, oldest first."""
        with self._lock:
            return copy.deepcopy([f for f in self._files.values() if "created" in f])

    def file_content(self, file_id: str) -> bytes | None:
        with self._lock:
            return self._contents.get(file_id)

    def file(self, file_id: str) -> tuple[Json, bytes]:
        """A completed file and its bytes; ``file_not_found`` before it is complete."""
        with self._lock:
            meta, data = self._files.get(file_id), self._contents.get(file_id)
            if meta is None or "created" not in meta or data is None:
                raise MethodError("file_not_found")
            return copy.deepcopy(meta), data

    # --- response_url ---------------------------------------------------------------------

    def new_response_url(self, channel: str, user: str, message_ts: str | None = None) -> str:
        """A response_url for an interaction by ``user`` in ``channel``, on the message at
        ``message_ts`` (ephemeral or not); without it, like a slash command's."""
        with self._lock:
            channel_id = self._channel(channel)
            is_ephemeral = self._find_ephemeral(channel_id, user, message_ts) is not None
            url_id = secrets.token_urlsafe(16)
            self._response_urls[url_id] = ResponseUrl(
                url_id, channel_id, user, message_ts, is_ephemeral, self._clock()
            )
            return f"{self.base_url}/response/{url_id}"

    @_changes
    def respond(self, url_id: str, body: Json) -> None:
        """A POST to a response_url: replace, delete, or post a new message (ephemeral
        unless ``response_type`` is ``in_channel``)."""
        with self._lock:
            url = self._response_url(url_id)
            if flag(body.get("delete_original")):
                self._delete_original(url)
            elif flag(body.get("replace_original")) and (url.message_ts or url.last_ts):
                self._replace_original(url, body)
            else:
                self._post_response(url, body)
            url.uses += 1

    def _response_url(self, url_id: str) -> ResponseUrl:
        url = self._response_urls.get(url_id)
        if url is None:
            raise ResponseUrlRejected("unknown_url")
        if self._clock() - url.created > RESPONSE_URL_TTL_S:
            raise ResponseUrlRejected("expired_url")
        if url.uses >= RESPONSE_URL_USES:
            raise ResponseUrlRejected("used_url")
        return url

    def _original(self, url: ResponseUrl) -> tuple[Json | None, bool]:
        """The message this response_url acts on, and whether it is ephemeral."""
        ts = url.message_ts or url.last_ts
        ephemeral = self._find_ephemeral(url.channel, url.user, ts)
        if ephemeral is not None:
            return ephemeral, True
        return self._messages[url.channel].get(ts or ""), False

    def _delete_original(self, url: ResponseUrl) -> None:
        original, is_ephemeral = self._original(url)
        if original is None:
            raise MethodError("message_not_found")
        if is_ephemeral:
            self._ephemeral.remove(original)
        else:
            del self._messages[url.channel][original["ts"]]

    def _replace_original(self, url: ResponseUrl, body: Json) -> None:
        """The whole message is replaced: blocks left out are gone, unlike chat.update."""
        original, is_ephemeral = self._original(url)
        if original is None:
            raise MethodError("message_not_found")
        text, blocks = self._content(body.get("text"), body.get("blocks"), body.get("attachments"))
        if not is_ephemeral:
            self._edits.setdefault((url.channel, original["ts"]), []).append(
                copy.deepcopy(original)
            )
            original["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        original["text"] = text
        original.pop("blocks", None)
        if blocks is not None:
            original["blocks"] = blocks

    def _post_response(self, url: ResponseUrl, body: Json) -> None:
        thread_ts = body.get("thread_ts")
        if body.get("response_type") == "in_channel":
            _, message = self.post_message(
                url.channel,
                text=body.get("text"),
                blocks=body.get("blocks"),
                thread_ts=thread_ts,
                check_membership=False,
            )
            url.last_ts = message["ts"]
            return
        text, blocks = self._content(body.get("text"), body.get("blocks"), body.get("attachments"))
        url.last_ts = self._add_ephemeral(url.channel, url.user, text, blocks, thread_ts)

    # --- what the sandbox page draws -------------------------------------------------------

    def default_user(self) -> str:
        """The first person who is not a bot: whom the page acts as until told otherwise."""
        with self._lock:
            people = [u for u in self._users.values() if not u["is_bot"] and not u["deleted"]]
            return (people or list(self._users.values()))[0]["id"]

    def snapshot(self, user: str) -> Json:
        """Everything the page draws for ``user``, with the :attr:`version` it shows (read
        under one lock, so the two agree): people, groups, the channels they see with
        threads and their ephemeral messages, their Home tab and the top of their modals."""
        with self._lock:
            self._user(user)
            stack = self._stacks.get(user, [])
            people = [self._person(u) for u in self._users.values()]
            groups = [{"id": g["id"], "handle": g["handle"]} for g in self._usergroups.values()]
            channels = [
                self._conversation(c, user)
                for c in self._channels.values()
                if self._visible(c, user)
            ]
            snapshot: Json = {"version": self._version, "user": user, "team": self._team()}
            snapshot |= {"bot_user_id": self.bot_user_id, "users": people, "usergroups": groups}
            snapshot |= {"channels": channels, "home": self.home(user)}
            top = copy.deepcopy(self._views[stack[-1]]) if stack else None
            return snapshot | {"modal": top, "modal_depth": len(stack)}

    @staticmethod
    def _person(user: Json) -> Json:
        keys = ("id", "name", "real_name", "is_bot", "deleted")
        return {key: user[key] for key in keys}

    def _visible(self, channel: Json, user: str) -> bool:
        """Public channels, and private ones and DMs the user is in."""
        public = channel["is_channel"] and not channel["is_private"]
        return public or user in self._members[channel["id"]]

    def _conversation(self, channel: Json, user: str) -> Json:
        kind = "im" if channel["is_im"] else "mpim" if channel["is_mpim"] else "channel"
        members = self._members[channel["id"]]
        label = channel["name"]
        if kind != "channel":
            others = [m for m in members if m != user] or [user]
            label = ", ".join(self._users[m]["name"] for m in others)
        found: Json = {"id": channel["id"], "name": channel["name"], "label": label}
        found |= {"kind": kind, "is_private": channel["is_private"], "is_member": user in members}
        return found | {"messages": self._timeline(channel["id"], user)}

    def _timeline(self, channel_id: str, user: str) -> list[Json]:
        """Top-level messages oldest first, each with its ``replies``; the user's ephemeral
        messages mixed in where they were posted (``is_ephemeral``)."""
        stored = self._messages[channel_id]
        ephemeral = [
            m | {"is_ephemeral": True}
            for m in self._ephemeral
            if (m["channel"], m["recipient"]) == (channel_id, user)
        ]
        top, replies = [], {}
        for message in [*stored.values(), *ephemeral]:
            root = message.get("thread_ts", message["ts"])
            if root in stored:  # a reply to a reply belongs to the thread's root
                root = stored[root].get("thread_ts", root)
            if root != message["ts"] and root in stored:
                replies.setdefault(root, []).append(message)
            if root == message["ts"] or root not in stored or _broadcast(message):
                top.append(message)
        timeline = [m | {"replies": sorted(replies.get(m["ts"], []), key=_ts_key)} for m in top]
        return copy.deepcopy(sorted(timeline, key=_ts_key))

    # --- faults and the call log ----------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int = 429,
        times: int = 1,
        retry_after: int | None = 1,
        *,
        after_apply: bool = False,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``*``: any) with ``status``. The
        call changes nothing, as when Slack refuses it; with ``after_apply`` it takes effect
        first (a message is posted, then 500 comes back), which is how a 5xx can mislead."""
        self._log.add(
            Fault(
                method,
                remaining=times,
                status=status,
                retry_after=retry_after,
                after_apply=after_apply,
            )
        )

    def delay(self, method: str, seconds: float, times: int = 1, after_apply: bool = True) -> None:
        """Hold the next ``times`` answers of ``method``. By default the call takes effect
        first, so a client that times out has still posted, which is how Slack fails."""
        self._log.add(Fault(method, remaining=times, seconds=seconds, after_apply=after_apply))

    def clear_faults(self) -> None:
        """Forget every injected fault not used up yet: Slack has recovered."""
        self._log.clear()

    def take_fault(self, method: str) -> Fault | None:
        return self._log.take(lambda fault: fault.matches(method))

    def record(self, call: RecordedCall) -> None:
        self._log.record(call)

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        return self._log.calls(lambda call: method in (None, call.method))

    # --- what Slack sends to the app ------------------------------------------------------

    def _team(self) -> Json:
        return {"id": self.team_id, "domain": self.team_domain}

    def _actor(self, user: str) -> Json:
        person = self._user(user)
        return {"id": user, "username": person["name"], "name": person["name"]} | {
            "team_id": self.team_id
        }

    def _envelope(self, kind: str, user: str) -> Json:
        """What every interactivity payload starts with."""
        payload = {"type": kind, "user": self._actor(user), "api_app_id": self.app_id}
        payload |= {"token": self.verification_token, "team": self._team()}
        return payload | {"enterprise": None, "is_enterprise_install": False}

    def block_actions(
        self,
        user: str,
        channel: str | None,
        message_ts: str | None,
        action_id: str,
        block_id: str | None = None,
        value: str | None = None,
        *,
        is_ephemeral: bool = False,
        selected_option: Json | None = None,
        view: str | None = None,
        state_values: Json | None = None,
    ) -> Json:
        """``user`` clicks an element of a stored message, or of view ``view`` (a modal or
        Home tab). The element must exist: its type and text come from the blocks.
        ``state_values`` are what the surface's inputs hold at the click, as Slack sends."""
        with self._lock:
            if view is not None:
                stored = self._view_by(view, None)
                if state_values is not None:
                    stored["state"] = {"values": copy.deepcopy(state_values)}
                return self._view_action(user, view, action_id, block_id, value, selected_option)
            channel_id = self._channel(channel or "")
            source = self._source_message(channel_id, user, message_ts, is_ephemeral)
            blocks = source.get("blocks", [])
            action = self._action(blocks, action_id, block_id, value, selected_option)
            payload = self._message_payload(user, channel_id, source, is_ephemeral)
            payload["state"] = {"values": copy.deepcopy(state_values or {})}
            return payload | {"actions": [action]}

    def _message_payload(self, user: str, channel_id: str, source: Json, ephemeral: bool) -> Json:
        payload = self._envelope("block_actions", user)
        container = {"type": "message", "message_ts": source["ts"], "channel_id": channel_id}
        container["is_ephemeral"] = ephemeral
        if source.get("thread_ts"):
            container["thread_ts"] = source["thread_ts"]
        payload |= {"container": container, "trigger_id": self.issue_trigger(user)}
        payload["channel"] = {"id": channel_id, "name": self._channels[channel_id]["name"]}
        if not ephemeral:  # Slack leaves the message out for ephemeral ones
            payload["message"] = copy.deepcopy(source)
        payload["state"] = {"values": {}}
        payload["response_url"] = self.new_response_url(channel_id, user, source["ts"])
        return payload

    def _source_message(
        self, channel_id: str, user: str, ts: str | None, is_ephemeral: bool
    ) -> Json:
        if is_ephemeral:
            found = self._find_ephemeral(channel_id, user, ts)
            if found is None:
                raise MethodError("message_not_found")
            return found
        return self._message(channel_id, ts or "")

    def _view_action(
        self,
        user: str,
        view_id: str,
        action_id: str,
        block_id: str | None,
        value: str | None,
        selected_option: Json | None,
    ) -> Json:
        stored = self._view_by(view_id, None)
        action = self._action(stored["blocks"], action_id, block_id, value, selected_option)
        payload = self._envelope("block_actions", user)
        payload["container"] = {"type": "view", "view_id": view_id}
        payload["trigger_id"] = self.issue_trigger(user)
        payload |= {"view": copy.deepcopy(stored), "actions": [action]}
        return payload

    def _action(
        self,
        blocks: list[Json],
        action_id: str,
        block_id: str | None,
        value: str | None,
        selected_option: Json | None,
    ) -> Json:
        for block, element in _iter_elements(blocks):
            if element["action_id"] == action_id and block_id in (None, block.get("block_id")):
                action = {"action_id": action_id, "block_id": block.get("block_id")}
                # when the click happened, by the sandbox's clock (as Slack stamps it)
                action |= {"type": element["type"], "action_ts": f"{self.now():.6f}"}
                if "text" in element:
                    action["text"] = copy.deepcopy(element["text"])
                if selected_option is not None:
                    action["selected_option"] = selected_option
                picked = value if value is not None else element.get("value")
                if picked is not None:
                    action["value"] = picked
                return action
        raise ElementNotFound(f"no element {action_id!r} in block {block_id!r}")

    def view_submission(self, user: str, view_id: str, values: Json) -> Json:
        """``user`` submits modal ``view_id`` with ``state.values`` (``{block_id: {action_id:
        {type, value | selected_option | ...}}}``). The view stays open until
        :meth:`close_view`, since the app's ack decides."""
        with self._lock:
            stored = self._view_by(view_id, None)
            if view_id not in self._stacks.get(user, []):
                raise MethodError("not_found")
            stored["state"] = {"values": copy.deepcopy(values)}
            payload = self._envelope("view_submission", user)
            payload |= {"trigger_id": self.issue_trigger(user), "view": copy.deepcopy(stored)}
            return payload | {"response_urls": []}

    def view_closed(self, user: str, view_id: str) -> Json:
        """``user`` closes modal ``view_id``: it and the views pushed over it close (the
        whole stack when it is the root)."""
        with self._lock:
            stored = self._view_by(view_id, None)
            self.close_view(user, view_id)
            payload = self._envelope("view_closed", user)
            return payload | {"view": copy.deepcopy(stored), "is_cleared": False}

    def block_suggestion(
        self,
        user: str,
        view_id: str | None,
        action_id: str,
        block_id: str,
        value: str,
        *,
        channel: str | None = None,
        message_ts: str | None = None,
    ) -> Json:
        """``user`` types ``value`` into an external select of view ``view_id``, or (with no
        view) of the message at ``channel`` and ``message_ts``."""
        with self._lock:
            payload = self._envelope("block_suggestion", user)
            payload |= {"action_id": action_id, "block_id": block_id, "value": value}
            if view_id is None:
                found = self._message_suggestion(user, channel, message_ts, action_id, block_id)
                return payload | found
            stored = self._view_by(view_id, None)
            self._action(stored["blocks"], action_id, block_id, None, None)
            payload["container"] = {"type": "view", "view_id": view_id}
            return payload | {"view": copy.deepcopy(stored)}

    def _message_suggestion(
        self, user: str, channel: str | None, ts: str | None, action_id: str, block_id: str
    ) -> Json:
        channel_id = self._channel(channel or "")
        ephemeral = self._find_ephemeral(channel_id, user, ts) is not None
        source = self._source_message(channel_id, user, ts, ephemeral)
        self._action(source.get("blocks", []), action_id, block_id, None, None)
        container = {"type": "message", "message_ts": source["ts"], "channel_id": channel_id}
        extra: Json = {"container": container | {"is_ephemeral": ephemeral}}
        extra["channel"] = {"id": channel_id, "name": self._channels[channel_id]["name"]}
        if not ephemeral:
            extra["message"] = copy.deepcopy(source)
        return extra

    def slash_command(
        self, user: str, channel: str, command: str, text: str = ""
    ) -> dict[str, str]:
        """The form fields Slack posts when ``user`` runs ``command`` in ``channel``."""
        with self._lock:
            channel_id = self._channel(channel)
            name = self._channels[channel_id]["name"]
            fields = {"token": self.verification_token, "team_id": self.team_id}
            fields |= {"team_domain": self.team_domain, "channel_id": channel_id}
            fields |= {"channel_name": name, "user_id": user, "user_name": self._user(user)["name"]}
            fields |= {"command": command, "text": text, "api_app_id": self.app_id}
            fields |= {"is_enterprise_install": "false"}
            fields["response_url"] = self.new_response_url(channel_id, user)
            return fields | {"trigger_id": self.issue_trigger(user)}

    def event_callback(self, event: Json) -> Json:
        """An Events API envelope around ``event``, authorised for the bot."""
        authorization = {"enterprise_id": None, "team_id": self.team_id}
        authorization |= {"user_id": self.bot_user_id, "is_bot": True}
        authorization["is_enterprise_install"] = False
        event_time = int(self._clock())
        payload = {"token": self.verification_token, "team_id": self.team_id}
        payload |= {"api_app_id": self.app_id, "event": copy.deepcopy(event)}
        payload |= {"type": "event_callback", "event_id": self._next_id("Ev")}
        payload |= {"event_time": event_time, "authorizations": [authorization]}
        payload["is_ext_shared_channel"] = False
        kind, channel = event.get("type", ""), event.get("channel", "")
        return payload | {"event_context": f"4-{kind}-{self.team_id}-{channel}"}

    def message_event(self, channel: str, message: Json) -> Json:
        """The ``message`` event for a stored message (see :meth:`post_as_user`)."""
        with self._lock:
            channel_id = self._channel(channel)
            channel_type = "im" if self._channels[channel_id]["is_im"] else "channel"
            event = copy.deepcopy(message) | {"channel": channel_id, "event_ts": message["ts"]}
            return self.event_callback(event | {"channel_type": channel_type})

    def app_home_opened(self, user: str) -> Json:
        """``user`` opens the app's Home tab; carries the published view, if any."""
        with self._lock:
            channel_id, _ = self.open_conversation([user])
            event = {"type": "app_home_opened", "user": user, "channel": channel_id}
            event |= {"tab": "home", "event_ts": self._next_ts()}
            home = self.home(user)
            if home is not None:
                event["view"] = home
            return self.event_callback(event)

    def url_verification(self, challenge: str | None = None) -> Json:
        challenge = challenge or secrets.token_urlsafe(32)
        return {
            "token": self.verification_token,
            "challenge": challenge,
            "type": "url_verification",
        }

    def signed_headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers Slack sends with ``body``: timestamp, signature, content type."""
        # the real time, not the sandbox clock: the app checks it against its own clock
        timestamp = int(time.time()) if timestamp is None else timestamp
        return {
            "Content-Type": content_type_of(body),
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": sign(self.signing_secret, body, timestamp),
        }
