"""Write the README's fault table from what ``make test-long`` measured.

``make test-long`` runs this after pytest: it reads ``var/fault-figures.json`` (every fault
test's figures, merged by tests/conftest.py) and replaces the table between the README's
``<!-- fault-table -->`` markers, so each figure there is one a run printed. Figures from a
``make test`` run (small volumes) are refused unless ``--allow-ci`` is given.

    python -m tests.fault_table [--figures var/fault-figures.json] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"
Row = tuple[str, str, str, str, str, str]


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _kill(f: Mapping[str, Any]) -> Row:
    audit = f"audit chain verifies ({_n(f['audit_records'])} records)" if f.get("audit_ok") else "audit chain FAILS"
    decided = (f"; {_n(f['findings_stored'])} of {_n(f['findings_expected'])} findings of an offline replay, "
               f"{_n(f['findings_extra'])} extra" if "findings_expected" in f else "")
    return (f"kill -9 of the worker, {f['kills']} times, at random points", _n(f["sent"]), _n(f["stored"]),
            _n(f["duplicated"]), _n(f["lost"]), f"{audit}; {_n(f['physical_rows'])} rows before dedup{decided}")


def _economics(title: str) -> Callable[[Mapping[str, Any]], Row]:
    def row(f: Mapping[str, Any]) -> Row:
        at = f["exhausted_at_trace"]
        exact = at == [100]
        other = (f"a $100 budget at $1 per trace exhausted at trace {', '.join(map(str, at)) or 'never'}"
                 + (" (exactly the 100th)" if exact else ""))
        if "rewinds" in f:
            other += f"; {f['skipped_by_committed_offset']} records skipped by the offset, {f['rewinds']:g} rewinds"
        # Exhausted at exactly the 100th trace: no usage record counted twice, none lost.
        return (title, f"{f['usage_records']} usage records", "", "0" if exact else "?", "0" if exact else "?", other)
    return row


def _outage(layout: str) -> Callable[[Mapping[str, Any]], Row]:
    def row(f: Mapping[str, Any]) -> Row:
        who = "a governing and a storing worker" if layout == "split" else "one worker with every role"
        return (f"ClickHouse unavailable for {f['outage_s']:g} s ({who})", _n(f["sent"]), _n(f["stored"]), "0",
                _n(f["lost"]), f"{f['input_during_outage_mb']} MB arrived during it; RSS {_n(f['rss_mb_start'])} → "
                f"{_n(f['rss_mb_half'])} → {_n(f['rss_mb_end'])} MB (start, half, end)")
    return row


def _broker(f: Mapping[str, Any]) -> Row:
    return ("broker restarted mid-stream", _n(f["sent"]), _n(f["stored"]), "0", _n(f["lost"]),
            "BreakerClient reconnected; a breaker opened after it")


def _cluster(f: Mapping[str, Any]) -> Row:
    again = ", ".join(f"{s:g} s" for s in f["governing_again_s"])
    return (f"kill -9 of the broker leading the raw topic, then of another ({f['brokers']} brokers, "
            "3 replicas, min.insync.replicas=2)", _n(f["sent"]), _n(f["stored"]), _n(f["duplicated"]),
            _n(f["lost"]), f"governing again after {again} with a broker down; lag back to 0; a breaker "
            f"opened after both; {_n(f['replayed_rows_before_merge'])} replayed rows before dedup")


def _rebalance(f: Mapping[str, Any]) -> Row:
    return ("two govern workers + a sink worker, partitions moved while traffic flowed", _n(f["traces"]),
            _n(f["stored"]), f"{f['extra']} findings, {f['doubled_transitions']} breaker transitions",
            f"{f['lost']} findings",
            f"{f['findings_stored']} of {f['findings_expected']} findings of a sequential replay; "
            f"{f['breaker_opens']} breaker openings")


def _bad_input(f: Mapping[str, Any]) -> Row:
    return ("bad input corpus (malformed, wrong types, 10 MB, deep nesting, invalid UTF-8) ×3",
            f"{f['bad_inputs']} bad + {f['good']} good", f"{f['good']} + {f['dead_lettered']} dead letters", "0",
            "0", f"{f['crashes']} crashes; RSS {_n(f['rss_mb_before'])} → {_n(f['rss_mb_end'])} MB")


def _cardinality(f: Mapping[str, Any]) -> Row:
    return (f"{_n(f['flood'])} random route names against a cap of {f['cap']} scopes, then a restart",
            _n(f["flood"]), _n(f["flood"]), "", "0",
            f"scopes held {f['scopes_held']:g} / {f['scopes_after_restart']:g} after the restart; RSS "
            f"{_n(f['rss_mb_warm'])} → {_n(f['rss_mb_peak'])} MB peak, {_n(f['rss_mb_after_restart'])} MB restored")


ROWS: dict[str, Callable[[Mapping[str, Any]], Row]] = {
    "kill-9": _kill,
    "economics-kill-9": _economics("kill -9 between two economics checkpoints"),
    "economics-rewind": _economics("committed usage offset moved past the economics checkpoint"),
    "clickhouse-outage-split": _outage("split"),
    "clickhouse-outage-all": _outage("all"),
    "broker-restart": _broker,
    "cluster-broker-loss": _cluster,
    "rebalance": _rebalance,
    "bad-input": _bad_input,
    "cardinality-flood": _cardinality,
}


def render(figures: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    lines = [f"Measured by `make test-long` ({run['tier']} volumes) on {run['when']}, commit {run['commit']}, "
             f"{run['machine']}; written by `tests/fault_table.py` from `var/fault-figures.json`.", "",
             "| fault | sent | stored | duplicated | lost | other |", "|---|---|---|---|---|---|"]
    for name, row in ROWS.items():
        if name in figures:
            lines.append("| " + " | ".join(row(figures[name])) + " |")
    missing = sorted(set(figures) - set(ROWS) - {"_run"})
    if missing:
        lines += ["", "Also measured (no row yet): " + ", ".join(f"`{m}`" for m in missing) + "."]
    return "\n".join(lines)


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() or "unknown"


def run_facts(figures: Mapping[str, Any]) -> dict[str, Any]:
    recorded = figures.get("_run", {})
    return {"tier": recorded.get("tier", "unknown"), "commit": recorded.get("commit", "unknown"),
            "when": recorded.get("when") or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"}


def replace_block(readme: str, table: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README has no {START} ... {END} block to replace")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=REPO / "var" / "fault-figures.json")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--allow-ci", action="store_true", help="accept figures of a make test run")
    parser.add_argument("--tier", choices=("ci", "long"), help="the run's tier, for a figures file that does "
                        "not record it (written before tests/conftest.py did)")
    parser.add_argument("--commit", help="the commit the run tested, for such a file")
    args = parser.parse_args(argv)
    figures = json.loads(args.figures.read_text())
    run = run_facts(figures)
    parser_overrides = {"tier": args.tier, "commit": args.commit}
    run.update({k: v for k, v in parser_overrides.items() if v})
    if run["tier"] != "long" and not args.allow_ci:
        print(f"{args.figures} holds {run['tier']!r} figures, not make test-long's: README left as it is",
              file=sys.stderr)
        return 1
    args.readme.write_text(replace_block(args.readme.read_text(), render(figures, run)))
    print(f"fault table in {args.readme} rewritten from {args.figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
