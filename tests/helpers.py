"""Small helpers shared by the integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll until ``predicate()`` is truthy and return its value; fail the test with ``what`` otherwise.

    Exceptions from the predicate count as "not yet" (objects often do not exist at first), but
    the last one is reported when time runs out, so a failing test says why.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: T | None = None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
        except Exception as e:
            last_error = e
        if time.monotonic() > deadline:
            detail = f"; last error: {last_error!r}" if last_error else f"; last value: {last_value!r}"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
