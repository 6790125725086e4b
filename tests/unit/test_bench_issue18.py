"""bench/issue18.py turns the sub-benches' JSON into issue 18's table: the ratios, the per-pair
cost, the "met?" verdicts and the footnotes must say what the figures say (fed fake results here;
running the benches themselves takes minutes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "issue18.py"


@pytest.fixture(scope="module")
def issue18() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_issue18", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def contender(cpu: float, rss: float = 300.0, same: bool | None = True, rounds: int = 1) -> dict[str, Any]:
    runs = [{"cpu": cpu, "wall": cpu * 2, "rss_mb": rss, "rss_before_mb": 100.0}] * rounds
    return {"runs": runs, "rounds": rounds, "cpu": cpu, "wall": cpu * 2, "rss_mb": rss, "same_as_reference": same}


def peers_json(**contenders: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "backtest", "bars": 1_000_000, "contenders": contenders}


def test_peer_ratios_are_peer_time_over_ours_and_judged_against_the_target(issue18: ModuleType) -> None:
    rows = issue18.issue_rows()
    figures = peers_json(**{"tb-fast": contender(0.1, rss=350), "tb-fast@before": contender(0.4),
                            "vectorbt": contender(0.2, rss=400), "numpy-loop": contender(0.05),
                            "tb-event": contender(2.0), "tb-event@before": contender(4.0),
                            "backtesting.py": contender(12.0), "python-loop": contender(0.4)})
    issue18.peer_rows(rows, figures, 1, True)
    assert rows["fast_vbt"].now.startswith("2.00x CPU (10.00M vs 5.00M bars/s)")
    assert rows["fast_vbt"].before.startswith("0.50x CPU")
    assert rows["fast_vbt"].met.startswith("yes")
    assert rows["fast_numpy"].now.startswith("0.50x CPU") and rows["fast_numpy"].met == "no"
    assert rows["event_bt"].now.startswith("6.00x CPU") and rows["event_bt"].met == "yes"
    assert rows["event_py"].now.startswith("0.20x CPU") and rows["event_py"].met == "no"


def test_fast_path_faster_but_bigger_than_vectorbt_is_not_met(issue18: ModuleType) -> None:
    rows = issue18.issue_rows()
    issue18.peer_rows(rows, peers_json(**{"tb-fast": contender(0.1, rss=500), "vectorbt": contender(0.2, rss=400)}),
                      1, False)
    assert rows["fast_vbt"].met.startswith("no (ratio yes, RSS 500 vs 400 MB)")
    assert rows["fast_vbt"].before == "-"


def test_a_missing_peer_or_changed_trades_is_said_not_hidden(issue18: ModuleType) -> None:
    rows = issue18.issue_rows()
    issue18.peer_rows(rows, peers_json(**{"tb-fast": contender(0.1), "tb-event": contender(1.0, same=False),
                                          "backtesting.py": contender(5.0)}), 3, True)
    assert rows["fast_vbt"].now == "-" and rows["fast_vbt"].met == "-"
    assert any("vectorbt did not run" in note for note in rows["fast_vbt"].footnotes)
    assert any("tb-fast@before failed" in note for note in rows["fast_vbt"].footnotes)
    assert any("ROUND TRIPS DIFFER" in line for line in rows["event_bt"].details)
    assert any("over 1 of 3 rounds" in line for line in rows["event_bt"].details)


def test_sweep_per_pair_cost_is_against_one_fast_path_backtest_of_the_same_run(issue18: ModuleType) -> None:
    row = issue18.issue_rows()["sweep"]
    sweep = {"pairs": 175, "contenders": {"tb-sweep": contender(3.5), "tb-sweep@before": contender(7.0),
                                          "vectorbt-sweep": contender(105.0)}}
    peers = peers_json(**{"tb-fast": contender(0.1), "tb-fast@before": contender(0.1)})
    issue18.sweep_row(row, sweep, peers, 1, True)
    assert row.now.startswith("30.0x vectorbt CPU (50.0 vs 1.67 pairs/s); a pair = 0.20 of one backtest")
    assert row.before.startswith("15.0x vectorbt CPU") and "a pair = 0.40 of one backtest" in row.before
    assert row.met.startswith("ratio yes, per pair yes")
    assert any("175 pairs, not the issue's 174" in note for note in row.footnotes)


def test_submit_row_takes_the_median_round_and_footnotes_the_before_trees_other_path(issue18: ModuleType) -> None:
    row = issue18.issue_rows()["submit"]

    def result(cpu50: float, cpu99: float, wall50: float, wall99: float) -> dict[str, Any]:
        figures = {"n": 2500, "cpu50": cpu50, "cpu99": cpu99, "wall50": wall50, "wall99": wall99}
        return {"results": {"full/driver": {"median": figures}, "none/driver": {"median": figures}}}

    now = [result(90, 900, 95, 2000), result(500, 900, 600, 900), result(80, 800, 90, 950)]
    issue18.submit_row(row, now, [(300.0, 1000.0), (250.0, 900.0), (400.0, 1300.0)], 3)
    assert row.now.startswith("risk full: CPU 90 / 900 us, wall 95 / 2,000 us")
    assert row.met.startswith("full: CPU yes, wall no")
    assert row.before.startswith("wall 300 / 1,000 us")
    assert any("no live bot" in note for note in row.footnotes)


def test_before_trees_submit_line_is_parsed(issue18: ModuleType) -> None:
    out = ("risk checks: 50,000 checks/s\nSQLite WAL: tick -> adapter.submit with risk + write-ahead commit: "
           "p50 1,248 us, p99 12,936 us\n")
    assert issue18.parse_before_submit(out) == (1248.0, 12936.0)
    assert issue18.parse_before_submit("nothing here") is None


def test_fanout_row_and_render_number_the_footnotes(issue18: ModuleType) -> None:
    rows = issue18.issue_rows()

    def run(p99: float) -> dict[str, Any]:
        return {"p50": 40.0, "p99": p99, "deliveries": 300_000, "expected": 300_000, "server_cpu": 6.0,
                "load_before": [1.0], "load_after": [2.0], "clients_are": "2 client processes (raw client)"}

    issue18.fanout_row(rows["fanout"], [run(90), run(150), run(80)], [], 3, why_before="exit 1: ImportError")
    assert rows["fanout"].now.startswith("p99 90 ms (p50 40 ms; 300,000/300,000 deliveries; API CPU 20.0 us")
    assert rows["fanout"].met == "yes (wall)"
    assert rows["fanout"].before == "-"
    rows["event_py"].footnotes.append("first note")
    table = issue18.render(list(rows.values()), "machine: nproc 2, test CPU", 90.0)
    lines = table.splitlines()
    assert lines[0].startswith("| measure | issue's figure (quoted, from the issue text) | before tree, this run |")
    assert sum(line.startswith("| ") for line in lines) == 1 + len(issue18.ISSUE)
    assert "| event path vs a bare Python loop of the same rule[1] | 0.095x |" in table
    assert "[2] the before tree's API failed in bench/api_fanout.py: exit 1: ImportError" in table
    assert "machine: nproc 2, test CPU" in table and "elapsed 1.5 min" in table
