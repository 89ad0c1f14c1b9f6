"""The one retry backoff of both controllers (Greeter retries, ScaledApp rounds and handlers)."""

from __future__ import annotations

BACKOFF_MAX = 60.0  # seconds
#: The cap when the API server did not answer (a fault that ends by itself): what waited is retried
#: within seconds of the API server being back, not a minute later.
TRANSIENT_MAX = 5.0


def backoff(failures: int, *, transient: bool = False) -> float:
    """Seconds before retrying after the ``failures``-th failure in a row: 1, 2, 4, … capped at a minute,
    or at :data:`TRANSIENT_MAX` for a ``transient`` failure (no answer, 5xx, 429)."""
    return float(min(2 ** min(max(failures - 1, 0), 6), TRANSIENT_MAX if transient else BACKOFF_MAX))
