"""``warden demo``: the whole pipeline on the embedded defaults, end to end, in minutes.

Starts the local broker if none answers, runs a worker process, sends synthetic traffic
with incidents, waits until ClickHouse holds every trace, and prints what was found.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from streams.breaker_client import BreakerClient
from streams.config import CONFIG_DIR, REPO_ROOT, WardenSettings
from streams.guard.signing import RecordVerifier
from streams.loadgen import LoadPlan, run_load

INCIDENTS = ["malformed@0:1", "pii@0.10:0.05", "secret@0.20:0.02", "error_burst@0.35:0.25",
             "cost@0.6:0.4", "drift@0.6:0.4"]

ANALYST_QUERIES = {
    "p95 latency and cost by model": (
        "SELECT model, count() AS traces, round(quantile(0.95)(latency_ms)) AS p95_latency_ms, "
        "sum(input_tokens) AS input_tokens, round(countIf(status = 'error') / count(), 3) AS error_rate "
        "FROM traces FINAL GROUP BY model ORDER BY traces DESC"),
    "redactions by entity": (
        "SELECT entity, sum(n) AS found FROM (SELECT arrayJoin(mapKeys(redaction_counts)) AS entity, "
        "redaction_counts[entity] AS n FROM traces FINAL) GROUP BY entity ORDER BY found DESC"),
    "error rate by route": (
        "SELECT route, count() AS traces, round(countIf(status = 'error') / count(), 3) AS error_rate "
        "FROM traces FINAL GROUP BY route ORDER BY error_rate DESC"),
}


def broker_up(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        # A probe: "connection refused" is the expected answer, not worth librdkafka's log lines.
        AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000,
                     "log_level": 0}).list_topics(timeout=3)
        return True
    except Exception:
        return False


def sql(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/sql?" + urllib.parse.urlencode({"q": query})
    with urllib.request.urlopen(url, timeout=60) as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode}; see its log")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("worker did not start serving in time; see its log")


def run_demo(settings: WardenSettings, console: Console, *, count: int, rate: float) -> int:
    started = time.monotonic()
    if not broker_up(settings.kafka_bootstrap):
        console.print(f"[bold]no broker at {settings.kafka_bootstrap}: starting the local one[/]")
        subprocess.run(["bash", str(REPO_ROOT / "deploy" / "kafka" / "kafka.sh"), "up"], check=True)
    run_id = time.strftime("%Y%m%d%H%M%S")
    workdir = REPO_ROOT / "var" / "demo" / run_id
    demo = settings.model_copy(update={
        "topic_prefix": f"demo{run_id}", "app_id": f"warden-demo{run_id}",
        "clickhouse_dsn": f"chdb://{workdir / 'clickhouse'}", "data_dir": workdir / "worker"})
    env = {**os.environ, "KAFKA_BOOTSTRAP": demo.kafka_bootstrap, "CLICKHOUSE_DSN": demo.clickhouse_dsn,
           "WARDEN_TOPIC_PREFIX": demo.topic_prefix, "WARDEN_APP_ID": demo.app_id,
           "WARDEN_DATA_DIR": str(demo.data_dir), "WARDEN_WEB_PORT": str(demo.web_port),
           "WARDEN_LOG_LEVEL": "WARNING", "WARDEN_CONFIG_DIR": str(_demo_config(workdir))}
    # The demo's pseudonym key is random per run unless one is configured.
    env.setdefault("WARDEN_REDACTION_KEY", secrets.token_hex(32))
    # The demo's worker is a throwaway on this host: loopback only, so its /sql needs no
    # token whatever the shell exports (docs/SECURITY.md, "Query port").
    env["WARDEN_WEB_BIND"] = "127.0.0.1"
    for name in ("WARDEN_QUERY_TOKEN", "WARDEN_QUERY_TOKEN_FILE", "WARDEN_WEB_TLS_CERTFILE", "WARDEN_WEB_TLS_KEYFILE"):
        env.pop(name, None)
    workdir.mkdir(parents=True, exist_ok=True)
    # Signed by default (issue 16): audit checkpoints, and the findings and breaker signals
    # the worker writes, which the demo's BreakerClient checks with the public key only.
    audit_public_key = demo_audit_key(env, workdir)
    signal_public_key = demo_signal_key(env)
    log_path = workdir / "worker.log"
    console.print(f"[bold]starting a worker[/] (topics {demo.topic_prefix}.*, ClickHouse {demo.clickhouse_dsn}, "
                  f"log {log_path})")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(demo.web_port, proc)
        transitions: list[tuple[str, str, str]] = []
        client = BreakerClient(demo.kafka_bootstrap, demo.topic("breaker.v1"),
                               verifier=RecordVerifier({"warden-demo": signal_public_key})).start(wait_s=60)
        client.on_update.append(lambda s: transitions.append((s.target, s.state.value, s.reason)))
        plan = LoadPlan.build(count=count, rate=rate, routes=4, trace_kb=2.0, incidents=INCIDENTS)
        console.print(f"[bold]sending {count} traces at {rate:.0f}/s[/] with incidents: {', '.join(INCIDENTS)}")
        sent = run_load(demo, plan, console)
        stored = _wait_stored(demo.web_port, sent["valid"], sent["malformed"], console)
        time.sleep(3)  # let the last breaker transitions and alerts land
        client.close()
        _summary(console, demo.web_port, sent, stored, transitions, time.monotonic() - started)
        console.print(f"audit checkpoints are signed; after the demo, check them with the public key alone:\n"
                      f"  CLICKHOUSE_DSN={demo.clickhouse_dsn} WARDEN_AUDIT_PUBLIC_KEY={audit_public_key} "
                      "warden audit verify", soft_wrap=True)
        return 0 if stored["traces"] == sent["valid"] else 1
    finally:
        _stop(proc)


def demo_audit_key(env: dict[str, str], workdir: Path) -> str:
    """Audit signing is on in the demo: a seed per run unless one is configured, kept only in
    the worker's environment; the public key (all a verifier needs) is written beside the run."""
    from sinks.audit_signing import CheckpointSigner, parse_seed

    env.setdefault("WARDEN_AUDIT_SIGNING_KEY", secrets.token_hex(32))
    public_key = CheckpointSigner(parse_seed(env["WARDEN_AUDIT_SIGNING_KEY"])).public_key.hex()
    (workdir / "audit-public.key").write_text(public_key + "\n")
    return public_key


def demo_signal_key(env: dict[str, str]) -> bytes:
    """The demo worker signs its control records with a fresh key (``warden-demo``): decide
    and the sinks then refuse what it did not sign. Returns the public key."""
    from streams.guard.signing import RecordSigner, parse_seed

    env["WARDEN_SIGNAL_KEY"] = secrets.token_hex(32)
    env["WARDEN_SIGNAL_KEY_NAME"] = "warden-demo"
    return RecordSigner("warden-demo", parse_seed(env["WARDEN_SIGNAL_KEY"])).public_key


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_stored(port: int, valid: int, malformed: int, console: Console, timeout_s: float = 120) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    stored = {"traces": 0, "dead_letters": 0}
    while time.monotonic() < deadline:
        stored["traces"] = int(sql(port, "SELECT count() AS n FROM traces FINAL")[0]["n"])
        stored["dead_letters"] = int(sql(port, "SELECT count() AS n FROM dead_letters FINAL")[0]["n"])
        if stored["traces"] >= valid and stored["dead_letters"] >= malformed:
            break
        time.sleep(1)
    console.print(f"stored {stored['traces']}/{valid} traces, {stored['dead_letters']}/{malformed} dead letters")
    return stored


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (rows[0].keys() if rows else ["(none)"]):
        table.add_column(str(column))
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    return table


def _summary(console: Console, port: int, sent: dict[str, Any], stored: dict[str, int],
             transitions: list[tuple[str, str, str]], elapsed: float) -> None:
    console.rule("[bold]Warden demo: what it found")
    console.print(f"traces sent {sent['valid']} (+{sent['malformed']} malformed), stored {stored['traces']}, "
                  f"dead letters {stored['dead_letters']}, elapsed {elapsed:.0f} s")
    console.print(_table("alerts by kind", sql(
        port, "SELECT kind, severity, count() AS alerts FROM alerts FINAL GROUP BY kind, severity ORDER BY kind")))
    console.print(_table("breaker transitions (seen by a BreakerClient)",
                         [{"target": t, "state": s, "reason": r[:90]} for t, s, r in transitions]))
    console.print(_table("dead letters by reason", sql(
        port, "SELECT error_kind, count() AS n FROM dead_letters FINAL GROUP BY error_kind ORDER BY n DESC")))
    for title, query in ANALYST_QUERIES.items():
        console.print(_table(f"analyst query: {title}", sql(port, query)))
    console.print("Query it yourself while a worker runs: warden sql \"SELECT ...\"")


def _demo_config(workdir: Path) -> Path:
    """deploy/config with windows short enough for a run of a few seconds: a 10 s
    error-rate window and a 5 s first cooldown (production defaults: 60 s and 30 s)."""
    target = workdir / "config"
    shutil.copytree(CONFIG_DIR, target, dirs_exist_ok=True)
    path = target / "breaker-policy.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["version"] = f"{policy['version']}+demo"
    policy["error_rate"].update({"window_s": 10, "bucket_s": 1, "renotify_s": 10})
    policy["defaults"].update({"cooldown_s": 5, "probe_requests": 10})
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return target
