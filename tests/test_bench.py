"""scripts/bench.py --quick: the benchmarks still run, and every section gives sane numbers.

Figures from --quick mean nothing (small N, one-second runs on a shared machine); this test
only keeps the benchmark from rotting. Deselect with ``-m "not bench"``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.bench,
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (.ci/run does)"),
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed"),
    pytest.mark.skipif(
        not (ROOT / "node_modules" / "faye").is_dir(),
        reason="needs node_modules (run `npm ci` in the checkout)",
    ),
]


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def spread(stats: dict[str, float]) -> bool:
    """A median (min-max) of positive numbers."""
    return all(positive(stats[k]) for k in ("median", "min", "max")) and (
        stats["min"] <= stats["median"] <= stats["max"]
    )


@pytest.mark.timeout(300)
def test_quick_bench_runs_every_section_with_sane_numbers(tmp_path: Path) -> None:
    # One test, not one per section: pytest-xdist would run a shared fixture once per worker.
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "scripts/bench.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    res, table = json.loads(out.read_text()), run.stdout
    check_layout(res, table)
    check_rest(res["rest"])
    check_fanout(res["fanout"])
    check_record(res["record"])
    check_cassette(res["cassette"])
    check_targets(res["targets"])


def check_layout(res: dict[str, Any], table: str) -> None:
    for section in ("rest", "fanout", "record", "cassette", "targets", "machine"):
        assert section in res, section
    for title in ("1. REST replay", "2. Notification fan-out", "3. Recording", "4. Cassettes"):
        assert title in table
    assert "Targets" in table
    assert res["open_files"] >= 1024


def check_rest(rest: dict[str, Any]) -> None:
    for name in ("relay replay", "bare aiohttp", "mitmdump --server-replay"):
        s = rest[name]
        for metric in ("throughput_rps", "p50_ms", "p99_ms", "cpu_us_per_req"):
            assert spread(s[metric]), (name, metric, s[metric])
        assert s["errors"] == 0, name
        assert s["requests"] > 10
    assert positive(rest["ratios"]["throughput_vs_bare"])
    assert positive(rest["ratios"]["throughput_vs_mitmdump"])


def check_fanout(fanout: dict[str, Any]) -> None:
    assert {"long-polling N=10", "websocket N=10"} <= set(fanout)
    for group in fanout.values():
        for name in ("relay replay", "floor", "faye"):
            s = group[name]
            for metric in ("p50_ms", "p99_ms", "last_ms"):
                assert spread(s[metric]), (name, metric)
            assert s["p50_ms"]["median"] <= s["p99_ms"]["median"]
            assert s["missed"] == s["failed_triggers"] == s["session_errors"] == 0, (name, s)
        assert positive(group["ratios"]["p99_vs_floor"])


def check_record(record: dict[str, Any]) -> None:
    for name in ("direct", "mitmdump", "mitmdump -w", "relay record"):
        s = record[name]
        for metric in ("throughput_rps", "p50_ms", "cpu_us_per_req"):
            assert spread(s[metric]), (name, metric)
        assert spread(s["notifications"]["notifications_per_s"]), name
        assert s["notifications"]["missed"] == 0
        assert s["errors"] == 0
    mem = record["relay record"]["memory_mb"]
    assert positive(mem["after_exchanges"]) and mem["exchanges"] >= 500
    recorded = record["relay record"]["cassette"]
    assert recorded["exchanges"] >= 500 and recorded["notifications"] > 0
    assert positive(record["ratios"]["cpu_vs_mitmdump"])


def check_cassette(c: dict[str, Any]) -> None:
    for op in ("load", "save", "show (render)", "relay show (command)", "relay diff (command)"):
        assert spread(c[op]), op
    assert c["events"] == 1000


def check_targets(targets: list[dict[str, Any]]) -> None:
    assert len(targets) >= 8
    for t in targets:
        assert isinstance(t["met"], bool) and math.isfinite(t["value"]), t
