from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fault_table import head_commit
from tests.infra import (
    FAULT_FIGURES,
    REPO,
    LocalKafka,
    clickhouse_dsn,
    kafka_bootstrap,
    leaked_processes,
)
from tests.scale import TIER
from tests.worker_proc import Pipeline


@pytest.fixture(scope="session")
def kafka() -> Iterator[tuple[str, LocalKafka | None]]:
    """A real Kafka broker for the whole test run (started once, stopped after)."""
    with kafka_bootstrap() as found:
        yield found


@pytest.fixture
def pipeline(kafka: tuple[str, LocalKafka | None], tmp_path: Path) -> Iterator[Pipeline]:
    """A deployment whose workers are all stopped when the test ends, on every path."""
    bootstrap, _ = kafka
    deployment = Pipeline(bootstrap=bootstrap, dsn=clickhouse_dsn(tmp_path), workdir=tmp_path)
    yield deployment
    deployment.stop_all()


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """Fail a test that leaves a worker or a broker running (and stop it): one leaked worker
    takes CPU from every test after it. Runs after the test's own fixtures are finalized."""
    yield
    leaked = leaked_processes()
    if leaked:
        pytest.fail("processes outlived their test (now stopped): " + "; ".join(leaked), pytrace=False)


FIGURES_DIR = REPO / "var" / "fault-figures.d"


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    if not _is_xdist_worker(session.config):
        shutil.rmtree(FIGURES_DIR, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Each test process (one, or each of pytest-xdist's) leaves its figures for the report."""
    if FAULT_FIGURES:
        worker = getattr(session.config, "workerinput", {}).get("workerid", "main")
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        (FIGURES_DIR / f"{worker}.json").write_text(json.dumps(FAULT_FIGURES))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault figures of every test process, printed and written to var/fault-figures.json
    (the README's fault table quotes that file)."""
    figures: dict[str, object] = {}
    for part in sorted(FIGURES_DIR.glob("*.json")):
        figures.update(json.loads(part.read_text()))
    if not figures:
        return
    terminalreporter.section("fault suite figures")
    for name, values in sorted(figures.items()):
        terminalreporter.write_line(f"{name}: {json.dumps(values)}")
    # tests/fault_table.py writes the README's table only from a long run, naming its commit.
    figures["_run"] = {"tier": TIER, "commit": head_commit(),
                       "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    (REPO / "var" / "fault-figures.json").write_text(json.dumps(figures, indent=2, sort_keys=True))
