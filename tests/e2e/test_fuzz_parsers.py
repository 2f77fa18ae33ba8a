"""The payload parsers fed directly with generated hostile input: each either returns a
well-typed result or raises its package's refusal (MalformedPayload, SignatureMismatch,
StaleTimestamp), never anything else. Cheap per input, so most of the 10,000+ generated
inputs of the fuzz suite run here; tests/e2e/test_fuzz_http.py sends the rest as requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from bot import actions, http, payloads
from bot.exceptions import MalformedPayload, RequestRejected
from connectors import envelopes, exceptions, signature
from tests.support import fuzz

PLANNED = {"slack": 2_500, "zendesk": 2_500, "signature": 1_500, "buttons": 1_500}
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_slack_request_parser_and_payload_readers():

    @given(fuzz.slack_requests())
    def slack(request):
        body, media = request
        try:
            parsed = http.parse_request(media, body).body
        except RequestRejected as exc:
            assert str(exc)
            return
        # what the listeners read from a payload that got through: typed, or refused
        values: dict = {}
        for read in (payloads.user_id, payloads.first_action, payloads.state_values):
            try:
                found = read(parsed)
            except MalformedPayload:
                continue
            values = found if read is payloads.state_values else values
        assert payloads.response_url(parsed) is None or isinstance(
            payloads.response_url(parsed), str
        )
        assert all(isinstance(v, str | bool) for v in payloads.source_ref(parsed).values())
        for block in (actions.REASON, actions.DETAILS, actions.POST, actions.URL):
            value = payloads.input_value(values, block)
            assert value is None or isinstance(value, str | list)

    fuzz.run(slack, PLANNED["slack"])


def test_zendesk_envelope_parser():

    @given(fuzz.zendesk_bodies())
    def zendesk(body):
        try:
            event = envelopes.parse(body)
        except exceptions.MalformedPayload as exc:
            assert str(exc)
            return
        assert isinstance(event.event_id, str) and 0 < len(event.event_id) <= 200
        assert event.ticket_id is None or 0 < event.ticket_id < 2**63
        assert json.dumps(event.payload)  # storable as jsonb text

    fuzz.run(zendesk, PLANNED["zendesk"])


def test_zendesk_signature_verifier():
    body = b'{"type": "zen:event-type:ticket.created"}'

    @given(
        st.one_of(st.none(), fuzz.hostile_text, st.just(signature.sign("s", "1", body))),
        st.one_of(
            st.none(),
            fuzz.hostile_text,
            st.integers(-(10**20), 10**20).map(str),
            st.just("2026-11-22T10:00:00Z"),
        ),
    )
    def verify(sig, timestamp):
        try:
            signature.verify(
                ["s"], signature=sig, timestamp=timestamp, body=body, now=NOW, tolerance_s=300
            )
        except (exceptions.SignatureMismatch, exceptions.StaleTimestamp) as exc:
            assert str(exc)
        else:  # only the real signature of a fresh timestamp passes
            assert sig == signature.sign("s", timestamp, body)

    fuzz.run(verify, PLANNED["signature"])


def test_button_values_and_modal_context():

    contexts = st.one_of(
        fuzz.json_values,
        fuzz.json_values.map(json.dumps),
        fuzz.mutated(
            json.loads(fuzz.view_submission("U0A", "x", {})["view"]["private_metadata"])
        ).map(json.dumps),
    )

    @given(st.one_of(fuzz.hostile_text, st.none()), contexts)
    def decode(value, metadata):
        try:
            button = actions.ButtonValue.decode(value)
        except MalformedPayload:
            pass
        else:
            assert 0 <= button.draft_set_id < 2**63
        try:
            http.check_payload(http.FORM, fuzz.view_submission("U0A", actions.ADOPTION_VIEW, {}))
            payload = fuzz.view_submission("U0A", actions.ADOPTION_VIEW, {})
            payload["view"]["private_metadata"] = metadata
            http.check_payload(http.FORM, payload)
        except MalformedPayload as exc:
            assert "private_metadata" in str(exc)

    fuzz.run(decode, PLANNED["buttons"])
