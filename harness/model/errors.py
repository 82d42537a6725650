"""The model's own failure: a scenario it cannot predict, named by step."""

from __future__ import annotations

from harness.errors import HarnessError


class ModelError(HarnessError):
    """The reference model met a state it does not model (or an internal inconsistency)."""
