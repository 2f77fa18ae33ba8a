"""Errors of the flywheel.

FlywheelError
├── InvalidFeedback
├── NotEnoughData        (the data window holds too little to train or evaluate)
├── RunInProgress        (another cycle holds the lock)
├── CycleFailed          (a cycle failed once started: its run says why, nothing live changed)
└── RegistryError        (no such model, nothing to roll back to)
    └── StaleModelChange (the champion changed since the admin asked)
"""

from __future__ import annotations

from aitl.core.exceptions import AitlError


class FlywheelError(AitlError):
    """The flywheel failed."""


class InvalidFeedback(FlywheelError):
    """A feedback event does not make sense (unknown kind, value or draft set)."""


class NotEnoughData(FlywheelError):
    """Not enough judged feedback in the data window to train."""


class RunInProgress(FlywheelError):
    """Another flywheel cycle is running."""


class CycleFailed(FlywheelError):
    """A cycle failed after its run was recorded; what failed is its cause."""

    def __init__(self, run_id: int, error: str) -> None:
        super().__init__(f"flywheel run {run_id} failed, nothing live changed: {error}")
        self.run_id = run_id
        self.error = error


class RegistryError(FlywheelError):
    """The model registry cannot do that."""


class StaleModelChange(RegistryError):
    """A change asked for against a champion that is no longer live (a repeated click)."""
