from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import FAULT_FIGURES, LocalKafka, clickhouse_dsn, kafka_bootstrap, leaked_processes
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FAULT_FIGURES:
        return
    import json

    terminalreporter.section("fault suite figures")
    for name, values in FAULT_FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(values)}")
    out = Path(__file__).resolve().parents[1] / "var" / "fault-figures.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FAULT_FIGURES, indent=2))
