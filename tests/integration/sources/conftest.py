"""Fixtures with real local servers for the metric-source tests: a stub JSON/HTTP server, a
Prometheus exporter, and a real ``prometheus`` process (Debian package ``prometheus``) scraping it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from .servers import (
    Exporter,
    Prometheus,
    StubServer,
    exporter_handler,
    free_port,
    prometheus_binary,
    serve,
    stop_process,
    stub_handler,
    wait_ready,
)


@pytest.fixture()
def stub_server() -> Iterator[StubServer]:
    stub = StubServer()
    with serve(stub_handler(stub)) as url:
        stub.url = url
        try:
            yield stub
        finally:
            stub.released.set()  # let stalled handlers finish before the server closes


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus (scrape_interval 1s) scraping a local exporter whose gauges tests set."""
    binary = prometheus_binary()
    workdir = tmp_path_factory.mktemp("prometheus")
    exporter = Exporter()
    with serve(exporter_handler(exporter)) as exporter_url:
        exporter.url = exporter_url
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: exporter\n"
            "    static_configs:\n"
            f"      - targets: ['{exporter_url.removeprefix('http://')}']\n"
        )
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--query.lookback-delta=5s",  # a stopped series disappears from instant queries quickly
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process, log)
            yield Prometheus(url=url, exporter=exporter, log=log)
        finally:
            stop_process(process)


@pytest.fixture()
def prometheus(prometheus_server: Prometheus) -> Iterator[Prometheus]:
    prometheus_server.exporter.clear()
    yield prometheus_server
    prometheus_server.exporter.clear()
