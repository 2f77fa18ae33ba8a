"""Errors of the Slack bot.

BotError
├── SlackUnavailable      (rate limits past their budget, 5xx, network: the job retries)
├── SlackRefused          (Slack answered with an error retrying will not fix)
├── SlackAppInactive      (uninstalled or its token revoked: nothing posts until reinstalled)
├── RequestRejected       (each carries the HTTP status /slack/events answers)
│   ├── PayloadTooLarge         413
│   ├── BadSignature            401
│   ├── UnsupportedContentType  415
│   └── MalformedPayload        400
├── UnknownCard
└── DigestError           (a digest cannot be built, found or sent as asked)
    ├── HelpCenterUnavailable   (Zendesk down or slow: the draft job retries)
    └── HelpCenterRefused       (not connected, no section, refused: told to the admin)
"""

from __future__ import annotations

from aitl.core.exceptions import AitlError, NotRetryable


class BotError(AitlError):
    """The Slack bot failed."""


class SlackUnavailable(BotError):
    """Slack could not be reached or asked us to slow down; try again later."""


class SlackRefused(BotError):
    """Slack refused the call."""

    def __init__(self, method: str, error: str) -> None:
        self.method = method
        self.error = error
        super().__init__(f"Slack refused {method}: {error}")


class SlackAppInactive(BotError, NotRetryable):
    """The Slack app was uninstalled or its bot token revoked: nothing is posted until it is
    reinstalled (`aitl slack status` checks)."""


class RequestRejected(BotError):
    """The request to /slack/events was refused."""

    status_code = 400


class PayloadTooLarge(RequestRejected):
    """The request body is larger than the configured limit."""

    status_code = 413


class BadSignature(RequestRejected):
    """The request is not signed with our Slack signing secret, or is too old."""

    status_code = 401


class UnsupportedContentType(RequestRejected):
    """Slack sends application/x-www-form-urlencoded or application/json."""

    status_code = 415


class MalformedPayload(RequestRejected):
    """The body is not a Slack payload."""


class UnknownCard(BotError):
    """No Slack card shows this draft set."""


class DigestError(BotError):
    """The digest cannot be built, found or sent as asked."""


class HelpCenterUnavailable(DigestError):
    """Zendesk did not answer the Help Center call in time; the job retries."""


class HelpCenterRefused(DigestError):
    """Zendesk refused the Help Center draft, or is not connected."""
