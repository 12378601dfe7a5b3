"""docker-compose.yml parses and refers only to files and commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from streams.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_compose_parses_and_refers_to_existing_files() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "clickhouse", "warden"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    for name, service in services.items():
        build = service.get("build")
        if build:
            dockerfile = REPO / build["context"] / build["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            for line in dockerfile.read_text().splitlines():
                match = re.match(r"COPY\s+(.+)\s+\S+$", line)
                if match:
                    for source in match.group(1).split():
                        assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source} missing"
        for dependency in service.get("depends_on", {}):
            assert dependency in services


def test_compose_worker_commands_are_real_cli_commands() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    runner = CliRunner()
    for service in compose["services"].values():
        command = service.get("command")
        if command and command[0] == "worker":
            result = runner.invoke(app, [*command, "--help"])
            assert result.exit_code == 0, result.output
            role = command[command.index("--role") + 1]
            assert role in ("all", "govern", "sink")
