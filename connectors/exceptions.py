"""Errors of the Zendesk connector.

ConnectorError
├── WebhookRejected              (each carries the HTTP status the endpoint answers)
│   ├── SignatureMismatch        401
│   ├── StaleTimestamp           401
│   ├── ReplayedDelivery         409
│   ├── PayloadTooLarge          413
│   ├── UnsupportedContentType   415
│   └── MalformedPayload         400
├── NotConnected
├── InternalSourceQuoted         (a public reply would quote an agent-only article)
├── UnfilledPlaceholder          (a reply still holds a {{placeholder}} or a gap to fill)
└── ZendeskError
    ├── ZendeskAuthFailed
    ├── ZendeskNotFound
    ├── ZendeskRefused           (400/422: Zendesk's own reason; retrying will not help)
    └── ZendeskUnavailable       (timeouts, 5xx, rate limits past their budget: retried)
"""

from __future__ import annotations

from aitl.core.exceptions import AitlError, NotRetryable


class ConnectorError(AitlError):
    """The Zendesk connector failed."""


class WebhookRejected(ConnectorError):
    """The webhook delivery was refused."""

    status_code = 400


class SignatureMismatch(WebhookRejected):
    """The X-Zendesk-Webhook-Signature header is missing or does not match the body."""

    status_code = 401


class StaleTimestamp(WebhookRejected):
    """The signature timestamp is missing, unreadable or outside the allowed window."""

    status_code = 401


class ReplayedDelivery(WebhookRejected):
    """This exact signed delivery was already accepted."""

    status_code = 409


class PayloadTooLarge(WebhookRejected):
    """The body is larger than AITL_ZENDESK_WEBHOOK_MAX_BYTES."""

    status_code = 413


class UnsupportedContentType(WebhookRejected):
    """Webhook bodies must be application/json."""

    status_code = 415


class MalformedPayload(WebhookRejected):
    """The body is not a Zendesk event or a trigger body in the documented template."""

    status_code = 400


class NotConnected(ConnectorError):
    """Zendesk is not configured: set AITL_ZENDESK_SUBDOMAIN (or AITL_ZENDESK_BASE_URL),
    AITL_ZENDESK_EMAIL and AITL_ZENDESK_API_TOKEN, or run `aitl zendesk connect`."""


class InternalSourceQuoted(ConnectorError):
    """A public reply quotes an article meant for agents only; an internal note may."""


class UnfilledPlaceholder(ConnectorError):
    """A reply still holds a placeholder the ticket cannot fill, a tag, or a gap marker;
    the agent replaces it before posting (never posted raw, public or internal)."""


class ZendeskError(ConnectorError):
    """The Zendesk API refused or failed a call."""


class ZendeskAuthFailed(ZendeskError):
    """Zendesk refused the credentials."""


class ZendeskNotFound(ZendeskError):
    """Zendesk has no such object."""


class ZendeskRefused(ZendeskError, NotRetryable):
    """Zendesk refused the request as invalid; the message carries Zendesk's own reason."""


class ZendeskUnavailable(ZendeskError):
    """Zendesk did not answer in time or failed; the job will retry."""
