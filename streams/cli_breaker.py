"""``warden breaker list|open|close|release|history``: operators' view and overrides."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

from streams.changes import operator
from streams.config import WardenSettings

# The breaker engine, the Kafka client and the signing keys load with the command that uses
# them: `warden` starts in a fraction of a second for every other command.

console = Console()


def send_control(settings: WardenSettings, kind: str, target: str, **evidence: object) -> None:
    """Operator commands go to the overrides topic (the only one an operator's Kafka
    principal may write, docs/SECURITY.md "Kafka ACLs"), keyed by route; the worker relays
    them to the findings topic and the decide agent that owns the route's breaker state.
    The decision is recorded like any other."""
    from confluent_kafka import Producer

    from streams.breaking import control_finding
    from streams.guard.control import control_keys

    finding = control_finding(kind, target, time.time(), **evidence)
    # Signed with the operator's own key (WARDEN_SIGNAL_KEY, named WARDEN_SIGNAL_KEY_NAME):
    # workers record the key's name as the operator, whatever --operator claims.
    keys = control_keys(settings, worker=False)
    if keys.signer is None:
        console.print("[yellow]WARDEN_SIGNAL_KEY is not set: this command is unsigned; workers that trust "
                      "operator keys reject it (docs/SECURITY.md \"Control records\")[/yellow]")
    record = keys.sign({**finding.to_dict(), "config_version": "operator"})
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                         **settings.security.confluent()})
    failures: list[object] = []
    producer.produce(settings.topic("overrides.v1"), key=finding.subject.get("route", "").encode(),
                     value=json.dumps(record).encode(),
                     on_delivery=lambda error, _msg: failures.append(error) if error else None)
    if producer.flush(30):
        raise RuntimeError("override not acknowledged by Kafka within 30 s: is the broker reachable?")
    if failures:
        raise RuntimeError(f"Kafka refused the override on {settings.topic('overrides.v1')}: {failures[0]} "
                           "(with ACLs, log in as the operator principal: docs/SECURITY.md \"Kafka ACLs\")")


def override_expiry(settings: WardenSettings, target: str, until: str | None, now: float) -> float | None:
    """``--until`` as epoch seconds, checked here against the local breaker policy so the
    operator gets the error at once (the worker checks again and dead-letters a refusal as
    ``bad_override``: it may run a different policy)."""
    if not until:
        return None
    from detectors.breaker import load_policy, parse_target

    try:
        expires = datetime.fromisoformat(until).timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        raise typer.BadParameter(f"--until {until!r} is not an ISO time ({exc})") from exc
    _, rules = load_policy(settings.config_dir / "breaker-policy.yaml").settings_for(parse_target(target))
    if expires <= now:
        raise typer.BadParameter(f"--until {until} is in the past")
    if expires - now > rules.override_max_s:
        raise typer.BadParameter(f"--until {until} is {expires - now:.0f}s away, above the policy's "
                                 f"override_max_s ({rules.override_max_s:g}s): shorten it")
    return expires


def register(app: typer.Typer) -> None:
    breaker_app = typer.Typer(help="Circuit breakers.", no_args_is_help=True)
    app.add_typer(breaker_app, name="breaker")

    @breaker_app.command("list")
    def list_() -> None:
        """Current state of every target (from the compacted breaker topic)."""
        from streams.breaker_client import BreakerClient, worker_verifier
        from streams.cli import print_rows

        settings = WardenSettings()
        with BreakerClient(settings.kafka_bootstrap, settings.topic("breaker.v1"),
                           security=settings.security, verifier=worker_verifier(settings)) as client:
            rows = [{"target": t, "state": s.state.value, "since": f"{s.at:%Y-%m-%d %H:%M:%S}",
                     "operator": s.operator or "", "reason": s.reason[:80]}
                    for t, s in sorted(client.states().items())]
        print_rows(rows, title="breakers")

    def _override(target: str, state: str, reason: str, until: str | None, who: str | None) -> None:
        from detectors.breaker import parse_target, target_key
        from streams.breaking import OVERRIDE

        canonical = target_key(parse_target(target))
        if not canonical or "route" not in parse_target(target):
            raise typer.BadParameter("write the target as route=R[,model=M][,deployment=D][,tenant=T]")
        settings = WardenSettings()
        expires = override_expiry(settings, canonical, until, time.time())
        send_control(settings, OVERRIDE, canonical, state=state, reason=reason,
                     operator=who or operator(), until=expires)
        console.print(f"requested manual {state} of {canonical} by {who or operator()}")

    @breaker_app.command("open")
    def open_(target: str, reason: Annotated[str, typer.Option(help="why (recorded)")],
              until: Annotated[str | None, typer.Option(help="ISO expiry (default: policy's)")] = None,
              who: Annotated[str | None, typer.Option("--operator", help="your identity")] = None) -> None:
        """Force a target open until the override expires or is released."""
        _override(target, "open", reason, until, who)

    @breaker_app.command("close")
    def close(target: str, reason: Annotated[str, typer.Option(help="why (recorded)")],
              until: Annotated[str | None, typer.Option(help="ISO expiry (default: policy's)")] = None,
              who: Annotated[str | None, typer.Option("--operator", help="your identity")] = None) -> None:
        """Force a target closed (findings then only alert) until expiry or release."""
        _override(target, "closed", reason, until, who)

    @breaker_app.command("release")
    def release(target: str, reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
                who: Annotated[str | None, typer.Option("--operator", help="your identity")] = None) -> None:
        """End a manual override early."""
        from detectors.breaker import parse_target, target_key
        from streams.breaking import RELEASE

        canonical = target_key(parse_target(target))
        send_control(WardenSettings(), RELEASE, canonical, reason=reason, operator=who or operator())
        console.print(f"requested release of {canonical}")

    @breaker_app.command("public-key")
    def public_key() -> None:
        """Print NAME=HEX of this machine's WARDEN_SIGNAL_KEY: add it to WARDEN_OPERATOR_PUBLIC_KEYS
        (an operator's key) or WARDEN_WORKER_PUBLIC_KEYS (a worker's) where records are checked."""
        from streams.guard.control import control_keys

        signer = control_keys(WardenSettings(), worker=False).signer
        if signer is None:
            raise typer.BadParameter("WARDEN_SIGNAL_KEY is not set; make a seed with: openssl rand -hex 32")
        typer.echo(f"{signer.name}={signer.public_key.hex()}")

    @breaker_app.command("history")
    def history(target: str, limit: Annotated[int, typer.Option()] = 50) -> None:
        """Transitions of one target, newest first (from ClickHouse)."""
        from detectors.breaker import parse_target, target_key
        from streams.cli import print_rows, run_sql

        canonical = target_key(parse_target(target)).replace("'", "\\'")
        body = run_sql("SELECT at, state, operator, policy_version, reason FROM breaker_events FINAL "
                       f"WHERE target = '{canonical}' ORDER BY at DESC LIMIT {int(limit)}")
        print_rows([json.loads(line) for line in body.decode().splitlines() if line.strip()],
                   title=f"history of {canonical}")
