"""``warden sim``: the realistic traffic simulator (``streams.sim``) from the command line.

* ``warden sim day --out DIR`` writes a day (traces, registered changes, truth, config) for
  ``warden replay``: the offline path, no Kafka, the same day at any time;
* ``warden sim publish --speedup N`` sends a day to Kafka with event time compressed;
* ``warden sim score --truth T --findings F`` scores findings (``warden replay``'s output)
  against the truth file: per incident what caught it, after how long, its driver, and the
  false alarms on stable traffic;
* ``warden sim replay --day DIR`` replays a written day through the detectors *and* the
  breaker on event time (``streams.sim.decide``) and prints the same, with breaker actions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from streams.sim.day import SimDay
    from streams.sim.score import Score

console = Console()
sim_app = typer.Typer(help="Realistic simulated traffic: a day of routes and incidents, with a truth file.",
                      no_args_is_help=True)

Incidents = Annotated[list[str] | None, typer.Option(
    "--incident", help="FAMILY@ROUTE[:AT[:DURATION_S]][,key=value...], repeatable; 'standard' (default): one of "
                       "every scenario; 'none': a quiet day")]


def build_day(*, seed: int, hours: float, scale: float, incidents: list[str] | None,
              start: float | None = None) -> SimDay:
    """The day the options describe (``incidents`` as on the command line)."""
    from streams.sim.day import DEFAULT_START, SimDay
    from streams.sim.scenarios import parse_incident

    begin = DEFAULT_START if start is None else start
    if not incidents or incidents == ["standard"]:
        return SimDay(seed=seed, start=begin, hours=hours, scale=scale)
    chosen = [] if incidents == ["none"] else [parse_incident(spec, begin, hours) for spec in incidents]
    return SimDay(seed=seed, start=begin, hours=hours, scale=scale, incidents=chosen)


def _describe(day: SimDay) -> str:
    return (f"simulated day: {day.hours:g} h of event time, {len(day.traces())} traces over {len(day.routes)} "
            f"routes; incidents: {', '.join(i.name for i in day.scenarios) or 'none'}")


@sim_app.command("day")
def day_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for traces.jsonl, changes.jsonl, "
                                                          "truth.json and config/")],
    seed: Annotated[int, typer.Option()] = 1,
    hours: Annotated[float, typer.Option(help="event-time length of the day's cycle (24: a real day)")] = 24.0,
    scale: Annotated[float, typer.Option(help="multiplies every route's request rate")] = 1.0,
    incident: Incidents = None,
) -> None:
    """Write a simulated day for ``warden replay`` (deterministic by seed)."""
    try:
        day = build_day(seed=seed, hours=hours, scale=scale, incidents=incident)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    console.print(_describe(day))
    paths = day.write(out)
    console.print(json.dumps({k: str(v) for k, v in paths.items()}))
    console.print(f"replay it: warden replay --input {paths['traces']} --changes {paths['changes']} "
                  f"--config {paths['config']} -o {out / 'findings.jsonl'}\n"
                  f"score it:  warden sim score --truth {paths['truth']} --findings {out / 'findings.jsonl'}")


@sim_app.command("publish")
def publish_command(
    seed: Annotated[int, typer.Option()] = 1,
    hours: Annotated[float, typer.Option(help="event-time length of the day's cycle")] = 6.0,
    scale: Annotated[float, typer.Option(help="multiplies every route's request rate")] = 0.5,
    speedup: Annotated[float, typer.Option(help="event seconds per wall second (0: as fast as possible)")] = 120.0,
    incident: Incidents = None,
    truth: Annotated[Path | None, typer.Option(help="also write the day's truth file here")] = None,
) -> None:
    """Publish a simulated day to Kafka (changes first), event time compressed by ``--speedup``."""
    from streams.cli import settings
    from streams.sim.publish import aligned_start, publish_day

    day = build_day(seed=seed, hours=hours, scale=scale, incidents=incident, start=aligned_start(hours))
    console.print(_describe(day))
    if truth is not None:
        truth.write_text(json.dumps(day.truth(), indent=1), encoding="utf-8")
    console.print(f"publishing at speedup {speedup:g} (~{hours * 3600 / speedup:.0f} s)" if speedup > 0
                  else "publishing as fast as possible")
    console.print(publish_day(settings(), day, speedup=speedup, console=console))


def print_score(result: Score, signals: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Per incident: what was injected, the finding that caught it, after how long (event
    time, from ``evidence.detected_at`` where the detector backdates ``at``), its driver and
    (with ``signals``) the breaker's action; then everything else raised."""
    from streams.sim.decide import breaker_action
    from streams.sim.score import driver

    table = Table(title="incidents: what was injected, what caught it, after how long (event time)")
    columns = ["incident", "finding", "after", "driver", *(["breaker"] if signals is not None else []), "ok"]
    for column in columns:
        table.add_column(column)
    for r in result.incidents:
        inc, f = r.incident, r.finding
        found = (f"{f['kind']} ({f['severity']})" if f else "MISSED") if inc["expected_kinds"] else (
            "quiet, as it should be" if r.caught else f"RAISED {', '.join(x['kind'] for x in r.forbidden)}")
        row = [f"{inc['id']} on {inc['route']}" + (f" ({inc['model']})" if inc.get("model") else ""),
               found, "" if r.delay_s is None else f"{r.delay_s / 60:.1f} min", "" if f is None else driver(f)]
        if signals is not None:
            row.append((breaker_action(inc, signals) or "-") + (f" (expected {inc['breaker']})" if inc.get(
                "breaker") else ""))
        table.add_row(*row, "yes" if r.caught else "NO")
    console.print(table)
    others = Table(title="everything else raised (warning and critical)")
    for column in ("kind", "severity", "route", "findings"):
        others.add_column(column)
    for (kind, severity, route), n in sorted(result.others().items()):
        others.add_row(kind, severity, route, str(n))
    console.print(others)
    console.print(f"false alarms (warning/critical on stable traffic): {len(result.false_alarms)}, "
                  f"{result.false_alarms_per_100k:.1f} per 100k traces; by kind: "
                  f"{dict(result.false_alarms_by_kind())}")


@sim_app.command("score")
def score_command(
    truth: Annotated[Path, typer.Option(help="truth.json of the day")],
    findings: Annotated[Path, typer.Option(help="findings JSON lines (warden replay's output)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Score findings against the truth: exit 1 when an incident was missed."""
    from streams.sim.score import score

    doc = json.loads(truth.read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in findings.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = score(doc, rows)
    if as_json:
        typer.echo(json.dumps(result.summary(), indent=1))
    else:
        print_score(result)
    if not result.all_caught:
        raise typer.Exit(1)


@sim_app.command("replay")
def replay_command(
    day: Annotated[Path, typer.Option(help="a directory written by 'warden sim day'")],
    embeddings: Annotated[bool, typer.Option(help="run embedding drift (loads the sentence encoder)")] = True,
) -> None:
    """Replay a written day through the detectors and the breaker (event time, no Kafka),
    write findings.jsonl and breaker.jsonl beside it, and score it: exit 1 on a miss."""
    from streams.cli_replay import read_changes
    from streams.replay import Replay
    from streams.sim.decide import DecidingReplay
    from streams.sim.score import score

    replay = DecidingReplay(Replay(day / "config", embeddings=embeddings,
                                   changes=read_changes(day / "changes.jsonl")))
    rows: list[dict[str, Any]] = []
    with (day / "traces.jsonl").open("rb") as source, (day / "findings.jsonl").open("w") as sink:
        for batch in replay.run(source):
            for record in batch.findings:
                sink.write(json.dumps(record, default=str) + "\n")
            rows += batch.findings
    (day / "breaker.jsonl").write_text("".join(json.dumps(s) + "\n" for s in replay.signals), encoding="utf-8")
    result = score(json.loads((day / "truth.json").read_text(encoding="utf-8")), rows)
    print_score(result, replay.signals)
    if not result.all_caught:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``sim`` to ``app``."""
    app.add_typer(sim_app, name="sim")
