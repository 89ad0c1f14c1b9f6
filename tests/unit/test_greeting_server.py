"""The greeting server, for real: ``kopfscale greet`` as a local process, spoken to over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kopfscale_greeting.server import wants_json

MESSAGE = "Grüß dich, 世界 👋 — <b>&</b>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, accept: str | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    kopfscale = Path(sys.executable).with_name("kopfscale")
    env = {**os.environ, "GREETER_MESSAGE": MESSAGE}
    proc = subprocess.Popen(
        [str(kopfscale), "greet", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                get(base + "/healthz")
                break
            except OSError as e:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"kopfscale greet did not start: {proc.stdout.read()!r}") from e  # type: ignore[union-attr]
                time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_plain_text_by_default(server: str) -> None:
    status, content_type, body = get(server + "/")
    assert status == 200
    assert content_type == "text/plain; charset=utf-8"
    assert body.decode("utf-8") == MESSAGE + "\n"


def test_json_when_asked(server: str) -> None:
    status, content_type, body = get(server + "/", accept="application/json")
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body) == {"message": MESSAGE}


def test_browser_accept_gets_text(server: str) -> None:
    _, content_type, _ = get(server + "/", accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert content_type.startswith("text/plain")


def test_healthz_and_unknown_paths(server: str) -> None:
    assert get(server + "/healthz")[0] == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        get(server + "/nope")
    assert info.value.code == 404


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", True),
        ("application/*", True),
        ("application/json;q=0.5, text/plain", False),
        ("text/plain;q=0.2, application/json", True),
        ("application/json;q=0", False),
        ("text/plain, application/json", False),
        ("text/*;q=0.1, */*;q=0.5, application/json", True),
        ("garbage", False),
    ],
)
def test_content_negotiation(accept: str | None, expected: bool) -> None:
    assert wants_json(accept) is expected
