"""Small helpers shared by the integration tests."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

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


class JsonServer:
    """A loopback HTTP server answering every GET with ``respond(headers) -> (status, body)``.

    The metric endpoints of the integration tests differ only in what they answer; the serving
    (port, thread, headers, shutdown) is here once. ``url`` ends in ``/stats``.
    """

    def __init__(self, respond: Callable[[dict[str, str]], tuple[int, bytes]]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = respond(dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stats"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
