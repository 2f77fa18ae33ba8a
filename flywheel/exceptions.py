"""Errors of the flywheel.

FlywheelError
└── InvalidFeedback
"""

from __future__ import annotations

from aitl.exceptions import AitlError


class FlywheelError(AitlError):
    """The flywheel failed."""


class InvalidFeedback(FlywheelError):
    """A feedback event does not make sense (unknown kind, value or draft set)."""
