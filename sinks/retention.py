"""Retention per data class: ``ALTER TABLE ... MODIFY TTL`` from :class:`RetentionSettings`.

The migrations set the defaults (004_retention_defaults.sql); this module changes them
when an operator asks (``warden schema apply --retention FILE`` or ``--ttl traces_days=90``)
and is idempotent: a table whose TTL already reads as wanted is not altered (an ALTER
would rewrite TTL information in every part). Tables that do not exist yet (``audit_log``
before its migration) are skipped. TTL is always on the record's event time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sinks.cluster import check_identifier, local_name


class RetentionError(ValueError):
    """A retention setting a user gave is wrong; the message names it and the fix."""


class RetentionSettings(BaseModel):
    """How long each data class is kept. Units are in the field names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = "default"
    traces_days: int = Field(default=30, ge=1, le=36_500, description="traces and agent steps (tool_calls)")
    findings_days: int = Field(default=365, ge=1, le=36_500)
    alerts_days: int = Field(default=365, ge=1, le=36_500)
    dead_letters_days: int = Field(default=30, ge=1, le=36_500)
    rollups_days: int = Field(default=400, ge=1, le=36_500, description="traces_per_minute, findings_per_minute")
    audit_years: int = Field(default=6, ge=1, le=80, description="audit_log, breaker_events, change_events")

    @classmethod
    def from_yaml(cls, path: Path) -> RetentionSettings:
        doc = yaml.safe_load(path.read_text()) or {}
        body = doc.get("retention", doc) if isinstance(doc, dict) else doc
        if not isinstance(body, dict):
            raise RetentionError(f"{path}: expected a mapping of data class to duration, e.g. traces_days: 30")
        if "version" in doc and "version" not in body:
            body = {**body, "version": doc["version"]}
        return cls.parse(body, source=str(path))

    @classmethod
    def parse(cls, values: dict[str, Any], source: str = "retention") -> RetentionSettings:
        try:
            return cls.model_validate({k: (str(v) if k == "version" else v) for k, v in values.items()})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise RetentionError(
                f"{source}: {problems}. Known fields: {', '.join(cls.model_fields)} "
                "(days 1..36500, audit_years 1..80)") from exc

    def with_overrides(self, pairs: Iterable[str]) -> RetentionSettings:
        """Apply ``CLASS=N`` strings (``traces_days=90``) on top of these settings."""
        values: dict[str, Any] = self.model_dump()
        for pair in pairs:
            name, sep, number = pair.partition("=")
            if not sep or not number.strip().isdigit():
                raise RetentionError(f"--ttl {pair!r}: write CLASS=N, e.g. traces_days=90 "
                                     f"(classes: {', '.join(f for f in type(self).model_fields if f != 'version')})")
            values[name.strip()] = int(number)
        return self.parse(values, source="--ttl")


@dataclass(frozen=True)
class DataClassTable:
    table: str
    time_expr: str  # written exactly as in the migration, so an unchanged TTL is recognised
    setting: str
    unit: str       # ClickHouse interval unit: DAY or YEAR

    def ttl(self, settings: RetentionSettings) -> str:
        return f"{self.time_expr} + INTERVAL {getattr(settings, self.setting)} {self.unit}"

    def formatted_ttl(self, settings: RetentionSettings) -> str:
        """The TTL as ClickHouse prints it in system.tables.engine_full."""
        fn = {"DAY": "toIntervalDay", "YEAR": "toIntervalYear"}[self.unit]
        return f"{self.time_expr} + {fn}({getattr(settings, self.setting)})"


DATA_CLASSES: tuple[DataClassTable, ...] = (
    DataClassTable("traces", "toDateTime(timestamp)", "traces_days", "DAY"),
    DataClassTable("tool_calls", "toDateTime(timestamp)", "traces_days", "DAY"),
    DataClassTable("findings", "toDateTime(at)", "findings_days", "DAY"),
    DataClassTable("alerts", "toDateTime(last_seen)", "alerts_days", "DAY"),
    DataClassTable("dead_letters", "toDateTime(received_at)", "dead_letters_days", "DAY"),
    DataClassTable("traces_per_minute", "minute", "rollups_days", "DAY"),
    DataClassTable("findings_per_minute", "minute", "rollups_days", "DAY"),
    DataClassTable("breaker_events", "toDateTime(at)", "audit_years", "YEAR"),
    DataClassTable("change_events", "toDateTime(at)", "audit_years", "YEAR"),
    DataClassTable("audit_log", "toDateTime(appended_at)", "audit_years", "YEAR"),
)

_TTL_CLAUSE = re.compile(r"\bTTL\s+(.*?)(?:\s+SETTINGS\s|$)", re.S)


def current_ttls(client: Client, tables: Iterable[str]) -> dict[str, str]:
    """TTL clause per existing table of the current database ('' when it has none)."""
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() "
        "AND has({names:Array(String)}, name)", parameters={"names": list(tables)}).result_rows
    found = {}
    for name, engine_full in rows:
        match = _TTL_CLAUSE.search(engine_full)
        found[str(name)] = match.group(1).strip() if match else ""
    return found


def apply_retention(client: Client, settings: RetentionSettings, *, cluster: str | None = None) -> list[str]:
    """Set each existing table's TTL from ``settings``; returns the statements run (empty
    when everything already matched). On a cluster the replicated ``*_local`` tables are
    altered ``ON CLUSTER`` (read here from the node we are connected to)."""
    names = {dc.table: (local_name(dc.table) if cluster else dc.table) for dc in DATA_CLASSES}
    existing = current_ttls(client, names.values())
    ran = []
    for dc in DATA_CLASSES:
        physical = names[dc.table]
        if physical not in existing or existing[physical] == dc.formatted_ttl(settings):
            continue
        on_cluster = f" ON CLUSTER {check_identifier('cluster', cluster)}" if cluster else ""
        statement = f"ALTER TABLE {physical}{on_cluster} MODIFY TTL {dc.ttl(settings)}"
        client.command(statement)
        ran.append(statement)
    return ran
