"""``warden change publish``: register a change in the ledger (for CI/CD pipelines)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from streams.changes import ChangePublisher, operator
from streams.config import WardenSettings
from streams.records import ChangeEvent, ComponentKind

console = Console()


def register(app: typer.Typer) -> None:
    change_app = typer.Typer(help="The change ledger.", no_args_is_help=True)
    app.add_typer(change_app, name="change")

    @change_app.command("publish")
    def publish(
        kind: Annotated[ComponentKind, typer.Option(help="what changed")],
        component: Annotated[str, typer.Option("--id", help="component id, e.g. support-chat-main")],
        new_version: Annotated[str, typer.Option(help="the version now live")],
        old_version: Annotated[str | None, typer.Option(help="the version it replaces")] = None,
        owner: Annotated[str | None, typer.Option(help="owning team (default: you)")] = None,
        route: Annotated[list[str] | None, typer.Option(help="route(s) in scope; repeatable; globs")] = None,
        tenant: Annotated[list[str] | None, typer.Option(help="tenant(s) in scope; repeatable")] = None,
        link: Annotated[str, typer.Option(help="ticket, pull request or commit")] = "",
        at: Annotated[str | None, typer.Option(help="ISO time it took effect (default: now)")] = None,
    ) -> None:
        """Publish one change event and wait for Kafka's acknowledgement."""
        when = datetime.fromisoformat(at) if at else datetime.now(UTC)
        event = ChangeEvent(component_kind=kind, component_id=component, old_version=old_version,
                            new_version=new_version, owner=owner or operator(), at=when,
                            scope_routes=route or [], scope_tenants=tenant or [], link=link, source="cli")
        ChangePublisher(WardenSettings()).publish(event)
        console.print(f"published change {event.event_id}: {kind.value} {component} -> {new_version}")
