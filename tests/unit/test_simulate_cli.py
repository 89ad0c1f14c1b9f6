"""``kopfscale simulate`` as a user runs it: exit codes, the table, JSON keys, CSV, the PNG, --compare."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kopfscale.cli import main

MANIFEST = """\
apiVersion: kopfscale.dev/v1
kind: ScaledApp
metadata: {name: web}
spec:
  template:
    spec:
      containers: [{name: web, image: nginx}]
  minReplicas: 1
  maxReplicas: 10
  metrics:
    - name: load
      type: http
      http: {url: "http://stats.example/", valueLocation: "$.load"}
      target: {type: AverageValue, value: 50}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 30}
"""

TRACE = "time,load\n0,50\n15,120\n30,300\n45,310\n60,\n75,200\n90,90\n105,40\n120,40\n"

JSON_KEYS = {"time", "metrics", "desiredReplicas", "reason", "message"}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def simulate(*args: str) -> Result:
    return CliRunner().invoke(main, ["simulate", *args])


@pytest.fixture()
def files(tmp_path: Path) -> tuple[str, str]:
    return write(tmp_path, "web.yaml", MANIFEST), write(tmp_path, "trace.csv", TRACE)


def test_the_table_shows_every_tick_and_the_summary(files: tuple[str, str]) -> None:
    manifest, trace = files
    result = simulate(manifest, "--trace", trace)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "time", "load->proposal", "raw", "limited-by", "replicas", "reason", "message",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[1:10]}
    assert rows["0s"][:5] == ["0s", "50->1", "1", "-", "1"]
    assert rows["45s"][:5] == ["45s", "310->6", "6", "tolerance", "6"]  # 7 without the 10 % band
    assert rows["15s"][:5] == ["15s", "120->3", "3", "-", "1->3"]
    assert rows["60s"][:5] == ["60s", "fail", "6", "fallback", "6"]
    assert rows["90s"][:5] == ["90s", "90->2", "2", "window", "4"]
    assert "scale-down stabilization window holds 4 | 4 -> 4" in " ".join(rows["90s"])
    summary = {" ".join(line.split()[:-1]): line.split()[-1] for line in lines[11:]}
    assert summary["changes"] == "5"
    assert summary["replica-minutes"] == "8.25"  # (1+3+6+6+6+4+4+2+1) x 15 s
    assert summary["time above target"] == "45s"  # 15 s, 30 s, 75 s


def test_json_is_a_list_of_ticks_with_stable_keys(files: tuple[str, str]) -> None:
    manifest, trace = files
    result = simulate(manifest, "--trace", trace, "--output", "json")
    assert result.exit_code == 0, result.output
    ticks = json.loads(result.stdout)
    assert len(ticks) == 9
    for tick in ticks:
        assert tick.keys() >= JSON_KEYS
    assert [t["desiredReplicas"] for t in ticks] == [1, 3, 6, 6, 6, 4, 4, 2, 1]
    assert ticks[1]["time"] == "1970-01-01T00:00:15.000Z"
    assert ticks[1]["metrics"] == [
        {
            "name": "load", "type": "http", "value": 120, "target": {"type": "AverageValue", "value": 50},
            "proposal": 3, "ratio": 2.4, "pods": 1, "active": True, "withinTolerance": False,
            "error": None, "fallback": False,
        }
    ]  # fmt: skip
    assert ticks[4]["metrics"][0]["error"] == "trace: no value (a failed read)"
    assert ticks[4]["reason"] == "AllMetricsFailed"
    assert ticks[6]["limitedBy"] == "window"
    assert ticks[6]["constraints"] == [{"type": "Stabilization", "replicas": 4}]
    assert ticks[6]["lastDecision"]["message"] == ticks[6]["message"]


def test_csv_has_one_row_per_tick(files: tuple[str, str]) -> None:
    manifest, trace = files
    result = simulate(manifest, "--trace", trace, "--output", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["replicas"] for r in rows] == ["1", "3", "6", "6", "6", "4", "4", "2", "1"]
    assert rows[2]["load.value"] == "300"
    assert rows[4]["load.error"] == "trace: no value (a failed read)"


def test_plot_writes_a_png(files: tuple[str, str], tmp_path: Path) -> None:
    manifest, trace = files
    png = tmp_path / "run.png"
    result = simulate(manifest, "--trace", trace, "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_plot_without_matplotlib_says_which_extra(
    files: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, trace = files
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = simulate(manifest, "--trace", trace, "--plot", str(tmp_path / "x.png"))
    assert result.exit_code == 2
    assert (
        "--plot needs matplotlib, which is not installed: pip install 'kopfscale[simulate]'" in result.stderr
    )
    assert not (tmp_path / "x.png").exists()


def test_compare_prints_both_policies_side_by_side(files: tuple[str, str], tmp_path: Path) -> None:
    manifest, trace = files
    fast = write(
        tmp_path,
        "fast.yaml",
        MANIFEST.replace("stabilizationWindowSeconds: 30", "stabilizationWindowSeconds: 0"),
    )
    result = simulate(manifest, "--trace", trace, "--compare", fast)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "time",
        "load",
        "web.yaml",
        "replicas",
        "limited-by",
        "fast.yaml",
        "replicas",
        "limited-by",
    ]
    assert lines[7].split() == ["90s", "90", "4", "window", "4->2", "-"]
    summary = {" ".join(line.split()[:-2]): line.split()[-2:] for line in lines[11:]}
    assert summary["replica-minutes"] == ["8.25", "7.5"]
    assert summary["changes"] == ["5", "5"]
    result = simulate(manifest, "--trace", trace, "--compare", fast, "--output", "json")
    runs = json.loads(result.stdout)
    assert [r["manifest"] for r in runs] == ["web.yaml", "fast.yaml"]
    assert runs[1]["summary"]["replicaMinutes"] == 7.5


def test_start_replicas_and_observe_mode(files: tuple[str, str], tmp_path: Path) -> None:
    _manifest, trace = files
    observe = write(
        tmp_path, "observe.yaml", MANIFEST.replace("maxReplicas: 10", "maxReplicas: 10\n  mode: Observe")
    )
    ticks = json.loads(
        simulate(observe, "--trace", trace, "--output", "json", "--start-replicas", "2").stdout
    )
    assert {t["replicas"] for t in ticks} == {2}  # Observe never scales
    assert [t["desiredReplicas"] for t in ticks][:3] == [2, 3, 6]


@pytest.mark.parametrize(
    ("manifest_text", "trace_text", "message"),
    [
        (MANIFEST.replace("  maxReplicas: 10\n", ""), TRACE, "web.yaml:4: spec.maxReplicas: Required value"),
        (MANIFEST.replace("type: http", "type: kafka"), TRACE, 'Unsupported value: "kafka"'),
        (MANIFEST, "time,rps\n0,1\n", "trace.csv: no column for metric(s) load"),
        (MANIFEST, "time,load\n0,1\n10,x\n", "trace.csv:3: column 'load': not a number: 'x'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, manifest_text: str, trace_text: str, message: str
) -> None:
    result = simulate(
        write(tmp_path, "web.yaml", manifest_text), "--trace", write(tmp_path, "trace.csv", trace_text)
    )
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_exactly_one_trace_source(files: tuple[str, str]) -> None:
    manifest, trace = files
    for args in ([], ["--trace", trace, "--from-cluster", "default/web"]):
        result = simulate(manifest, *args)
        assert result.exit_code == 2
        assert "give exactly one of --trace TRACE or --from-cluster NAMESPACE/NAME" in result.stderr


def test_a_prometheus_trace_feeds_the_named_metric(tmp_path: Path) -> None:
    manifest = write(tmp_path, "web.yaml", MANIFEST)
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[1767600000, "100"], [1767600015, "400"]]}],
        },
    }
    trace = write(tmp_path, "q.json", json.dumps(body))
    result = simulate(manifest, "--trace", trace, "--trace-metric", "load", "--output", "json")
    assert result.exit_code == 0, result.output
    ticks = json.loads(result.stdout)
    assert [t["time"] for t in ticks] == ["2026-01-05T08:00:00.000Z", "2026-01-05T08:00:15.000Z"]
    assert [t["desiredReplicas"] for t in ticks] == [2, 6]  # 8 wanted; +4 pods per 15 s
    result = simulate(manifest, "--trace", trace, "--trace-metric", "rps")
    assert result.exit_code == 2
    assert "--trace-metric 'rps': the manifest has no such metric (load)" in result.stderr


def test_the_documented_example_prints_the_documented_table() -> None:
    repo = Path(__file__).resolve().parents[2]
    doc = (repo / "docs" / "what-if.md").read_text()
    documented = doc.split("```text\n")[2].split("```")[0]  # the first block after the usage
    result = simulate(
        str(repo / "examples" / "scaledapp-whatif.yaml"),
        "--trace",
        str(repo / "examples/traces/flash-sale.csv"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == documented
