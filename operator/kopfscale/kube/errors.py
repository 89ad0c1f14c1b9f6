"""The kube layer's one error type: what the API server (or the way to it) said, fit for status."""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A request that did not succeed.

    ``status`` is the HTTP status, or ``None`` when no answer came (timeout, connection refused):
    callers decide on it (404 absent, 409 conflict, 403 forbidden). ``message`` is the API
    server's own message (``Status.message``), which names the field and the rule for a 422.
    """

    def __init__(self, status: int | None, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        if self.status is None:
            return f"no answer from the API server: {self.message}"
        return f"HTTP {self.status}: {self.message}"

    @property
    def transient(self) -> bool:
        """No answer, an API server error or throttling: it passes by itself; retry soon."""
        return self.status is None or self.status >= 500 or self.status == 429

    def condition_reason(self, invalid: str = "Invalid") -> str:
        """A CamelCase condition reason for this refusal (``invalid`` names a 422 in the caller's terms)."""
        if self.status == 403:
            return "Forbidden"
        if self.status == 422:
            return invalid
        if self.status == 409:
            return "UpdateConflict"
        if self.status is None or self.status >= 500:
            return "ApiServerError"
        return "ApiError"

    @classmethod
    def from_response(cls, status: int, reason: str | None, body: bytes) -> ApiError:
        message = ""
        try:
            loaded: Any = json.loads(body or b"")
            if isinstance(loaded, dict):
                message = str(loaded.get("message") or "")
        except ValueError:
            message = body[:200].decode("utf-8", errors="replace").strip()
        return cls(status, reason or "", message or reason or "no details")
