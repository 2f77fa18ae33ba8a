"""Small parts of the connector: PII redaction, encrypted secrets, routing, derived adoption."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from aitl.core import exceptions
from aitl.core.pii import luhn_valid, redact
from aitl.core.secrets import SecretBox, SecretStore, load_keys
from connectors import adoption, routing
from connectors.store import StoredTicket


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe@example.com today", "write to [EMAIL] today"),
        ("call +1 202-555-0147 please", "call [PHONE] please"),
        ("or (202) 555 0147", "or [PHONE]"),
        ("card 4111 1111 1111 1111 expires", "card [CARD] expires"),
        ("card 4111-1111-1111-1112 is not Luhn", "card 4111-1111-1111-1112 is not Luhn"),
        ("order LH-4820193 on 2026-11-21, 30 days", "order LH-4820193 on 2026-11-21, 30 days"),
        ("ship to 55 Main Street, Boston, MA 02108 now", "ship to [ADDRESS] now"),
        ("office: 12 High Street, Oxford OX1 4AP.", "office: [ADDRESS]."),
        ("firmware 4.2.1 on 5 hubs, reset 3 times", "firmware 4.2.1 on 5 hubs, reset 3 times"),
    ],
)
def test_redaction(text, expected):
    assert redact(text) == expected
    assert redact(expected) == expected, "redacting twice changes nothing"


def test_luhn():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_secret_box_encrypts_and_rotates(tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox([old]).encrypt("zendesk-token")
    assert b"zendesk-token" not in token
    rotated = SecretBox([new, old]).rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "zendesk-token"
    with pytest.raises(exceptions.ConfigurationError, match="cannot be decrypted"):
        SecretBox([new]).decrypt(token)
    with pytest.raises(exceptions.ConfigurationError, match="Fernet"):
        SecretBox(["not-a-key"])


def test_key_file_is_created_once_owner_only(tmp_path):
    key_file = tmp_path / "secrets.key"
    first = load_keys(None, key_file)
    assert load_keys(None, key_file) == first
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_secret_store_keeps_ciphertext_only(db, tmp_path):
    secrets = SecretStore(db, SecretBox(load_keys(None, tmp_path / "k")))
    secrets.put("zendesk.api_token", "tok-123")
    secrets.put("zendesk.api_token", "tok-456")
    assert secrets.get("zendesk.api_token") == "tok-456"
    assert secrets.get("missing") is None
    with db.connection() as conn:
        raw = conn.execute("SELECT ciphertext FROM connector_secrets").fetchone()[0]
    assert b"tok-456" not in bytes(raw)
    assert secrets.rotate_all() == 1 and secrets.get("zendesk.api_token") == "tok-456"


def ticket(**fields) -> StoredTicket:
    base = dict(
        ticket_id=1,
        subject="",
        description="",
        status="new",
        priority=None,
        requester_id=None,
        requester_email=None,
        requester_name=None,
        assignee_id=None,
        assignee_email=None,
        group_id=None,
        brand_id=None,
        tags=[],
        created_at=None,
        updated_at=None,
        url=None,
    )
    return StoredTicket(**{**base, **fields})


def test_routing_first_match_wins_then_default():
    routes = [
        {"brand_id": "7", "channel": "C-brand"},
        {"group_id": "3", "channel": "C-group"},
        {"tag": "vip", "channel": "C-vip"},
    ]
    assert routing.route(ticket(brand_id=7, tags=["vip"]), routes, "C-all") == "C-brand"
    assert routing.route(ticket(group_id=3), routes, "C-all") == "C-group"
    assert routing.route(ticket(tags=["x", "vip"]), routes, "C-all") == "C-vip"
    assert routing.route(ticket(), routes, "C-all") == "C-all"
    assert routing.route(ticket(), routes, None) is None
    assert routing.validate([{"tag": "a"}, {"tag": "a", "brand_id": "1", "channel": "C"}]) == [
        "AITL_SLACK_ROUTES rule 1: needs exactly one of brand_id, group_id, tag and a channel",
        "AITL_SLACK_ROUTES rule 2: needs exactly one of brand_id, group_id, tag and a channel",
    ]


def test_derived_adoption_from_the_sent_reply():
    drafts = {
        "A": "Hi there, reset your password from the sign-in page. Best regards",
        "B": "Hello! Our refund takes 5 business days to reach your card.",
    }
    as_is = adoption.derive(
        "Hi there, reset your password from the sign-in page. Best regards!",
        drafts,
        as_is=0.95,
        edited=0.5,
    )
    assert (as_is.closest_label, as_is.adoption) == ("A", "as_is") and as_is.similarity_a == 1.0
    edited = adoption.derive(
        "Hello! A refund takes 5 to 7 business days to reach your card.",
        drafts,
        as_is=0.95,
        edited=0.5,
    )
    assert (edited.closest_label, edited.adoption) == ("B", "edited")
    assert 0.5 <= edited.similarity_b < 0.95
    unused = adoption.derive(
        "Could you send a photo of the hub's LED?", drafts, as_is=0.95, edited=0.5
    )
    assert unused.adoption == "not_used"


def test_a_draft_with_links_sent_as_is_counts_as_is():
    """Zendesk's plain_body of a reply posted with links keeps their text, not their URLs."""
    draft = (
        "Hi there, you can [reset your password](https://help.example.com/hc/articles/7-reset)"
        " from the sign-in page. Best regards"
    )
    sent = "Hi there, you can reset your password from the sign-in page. Best regards"
    derived = adoption.derive(sent, {"A": draft, "B": "Something else."}, as_is=0.95, edited=0.5)
    assert (derived.closest_label, derived.adoption) == ("A", "as_is")
    assert derived.similarity_a == 1.0
