"""The one retry backoff of both controllers (Greeter retries, ScaledApp rounds and handlers)."""

from __future__ import annotations

BACKOFF_MAX = 60.0  # seconds


def backoff(failures: int) -> float:
    """Seconds before retrying after the ``failures``-th failure in a row: 1, 2, 4, … capped at a minute."""
    return float(min(2 ** min(max(failures - 1, 0), 6), BACKOFF_MAX))
