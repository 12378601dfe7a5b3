"""Issue 16, the query endpoint: every attack of the review, against chDB and a real worker.

Against the engine (ClickHouseStore.query_readonly, the analysts' session): table functions
and the scalar file(), INTO OUTFILE, SETTINGS/SET, KILL QUERY, several statements in one;
limits that hold; a long analyst query that does not stall inserts and is cancelled.
Against a running worker: it listens on loopback only by default, refuses to start exposed
without a token, checks the token when exposed, serves no Faust pages, and kills a query
whose client went away.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sinks.analyst_sql import AnalystLimits, QueryRefused, ResultTooLarge, analyst_views
from sinks.clickhouse import ClickHouseStore, SinkError, analyst_dsn
from streams.config import WardenSettings
from streams.query_endpoint import (
    WebExposureError,
    bearer_matches,
    check_web_exposure,
    faust_web_options,
    is_loopback,
)
from tests.infra import REPO
from tests.pipeline_helpers import wait_for
from tests.worker_proc import Pipeline, WorkerProcess

SECRET_ENV = "planted-secret-for-environ-4b1d"
TOKEN = "query-token-" + "7c" * 16
LONG_QUERY = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3"

# Each must be refused; the canary file must never be read or written.
ATTACKS = {
    "file table function": "SELECT * FROM file('{canary}', 'LineAsString')",
    "file of /proc/self/environ": "SELECT * FROM file('/proc/self/environ', 'LineAsString')",
    "scalar file()": "SELECT file('{canary}')",
    "file() in a lambda": "SELECT arrayMap(p -> file(p), ['{canary}'])",
    "file() in a subquery": "SELECT * FROM (SELECT file('{canary}') AS f)",
    "describe file()": "DESCRIBE file('{canary}', 'CSVWithNames')",
    "url (SSRF)": "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    "remote": "SELECT * FROM remote('127.0.0.1:9000', system.one)",
    "s3": "SELECT * FROM s3('http://127.0.0.1:9/bucket/key', 'LineAsString')",
    "executable": "SELECT * FROM executable('id', 'LineAsString', 'x String')",
    "into outfile": "SELECT 1 INTO OUTFILE '{outfile}'",
    "settings raising the time limit": "SELECT 1 SETTINGS max_execution_time = 0",
    "settings lifting readonly": "SELECT 1 SETTINGS readonly = 0",
    "set": "SET max_execution_time = 0",
    "kill query": "KILL QUERY WHERE 1",
    "two statements": "SELECT 1; SELECT file('{canary}')",
    "insert": "INSERT INTO owners (kind, pattern) VALUES ('route', 'x')",
    "format template (reads a file)": "SELECT 1 FORMAT Template",
    "show tables into outfile": "SHOW TABLES INTO OUTFILE '{outfile}'",
    "show tables from a database, format": "SHOW TABLES FROM system FORMAT CSV",
    "describe into outfile": "DESCRIBE TABLE traces INTO OUTFILE '{outfile}'",
    "describe with settings": "DESCRIBE TABLE traces SETTINGS max_threads = 1",
    "explain": "EXPLAIN SELECT 1",
}

# What the CLI, the demo and the integration tests ask through /sql: must keep working.
ORDINARY = (
    "SELECT count() AS n FROM traces FINAL", "SELECT * FROM traces FINAL",
    "SELECT trace_id, span_id FROM traces FINAL ORDER BY trace_id, span_id LIMIT 10 OFFSET 20",
    "SELECT uniqExact(trace_id) AS u, max(toUnixTimestamp64Milli(timestamp)) AS t FROM traces FINAL",
    "SELECT DISTINCT kind FROM findings", "SELECT kind, severity FROM alerts FINAL WHERE kind LIKE 'error_rate%'",
    "SELECT 'a;b' AS semicolon_in_a_string", "SELECT 1 AS one -- a trailing comment", "SELECT 1 AS one;",
    "SHOW TABLES", "SHOW TABLES FROM system LIKE 'one'", "DESCRIBE TABLE traces", "DESC traces",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}", analyst_limits=AnalystLimits(
        max_execution_s=60, max_result_rows=100, max_result_bytes=1024 * 1024))
    store.migrate()
    yield store
    store.close()


def attack_text(template: str, tmp_path: Path) -> str:
    canary = tmp_path / "canary.csv"
    canary.write_text(f"secret\n{SECRET_ENV}\n")
    return template.format(canary=canary, outfile=tmp_path / "stolen.txt")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_query_attack_is_refused_by_the_engine(store: ClickHouseStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(Exception) as refused:
        body = store.query_readonly(attack_text(ATTACKS[name], tmp_path))
        pytest.fail(f"{name} was answered: {body[:200]!r}")
    assert SECRET_ENV not in str(refused.value)
    assert not (tmp_path / "stolen.txt").exists()


@pytest.mark.parametrize("query", ORDINARY)
def test_ordinary_analyst_queries_still_run(store: ClickHouseStore, query: str) -> None:
    store.query_readonly(query)  # raises if refused


def test_the_limits_hold_and_cannot_be_raised(store: ClickHouseStore) -> None:
    # Over a limit the analyst gets an error that says what to do, never a cut answer that
    # looks whole (result_overflow_mode=break returned 65,409 of 100,000 rows silently).
    for too_large in ("SELECT number FROM numbers(101)", "SELECT number FROM numbers(1000000)",
                      "SELECT repeat(toString(number), 40000) AS wide FROM numbers(60)"):
        with pytest.raises(ResultTooLarge, match="over the analyst limits .*LIMIT"):
            store.query_readonly(too_large)
    assert len(store.query_readonly("SELECT number FROM numbers(1000000) LIMIT 100").splitlines()) == 100
    assert len(store.query_readonly("SELECT number FROM numbers(100)").splitlines()) == 100
    limits = json.loads(store.query_readonly(
        "SELECT getSetting('readonly') AS ro, getSetting('max_execution_time') AS t, "
        "getSetting('max_result_rows') AS r, getSetting('max_memory_usage') AS m"))
    assert int(limits["ro"]) == 1 and float(limits["t"]) == 60 and int(limits["r"]) == 100
    assert int(limits["m"]) == AnalystLimits().max_memory_bytes
    with pytest.raises(Exception, match="readonly|not allowed"):
        store.query_readonly("SELECT number FROM numbers(1000) SETTINGS max_result_rows = 0")
    # A plain analyst query still works, and so do the analyst views.
    assert b'"n":' in store.query_readonly("SELECT count() AS n FROM analyst_traces")


def test_a_long_analyst_query_neither_stalls_inserts_nor_outlives_its_cancel(store: ClickHouseStore) -> None:
    tag = uuid.uuid4().hex
    outcome: dict[str, object] = {}

    def analyst() -> None:
        try:
            outcome["body"] = store.query_readonly(LONG_QUERY, tag=tag)
        except Exception as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=analyst)
    thread.start()
    marker = f"warden-analyst:{tag}"
    wait_for(lambda: bool(store.query_rows(
        "SELECT count() FROM system.processes WHERE position(query, {m:String}) > 0 AND query NOT LIKE '%processes%'",
        {"m": marker})[0][0]), 60, "the analyst query to run")
    store.insert("owners", ["kind", "pattern", "team"], [["route", "during-analyst-query", "t"]])
    assert thread.is_alive(), "the insert waited for the analyst query"
    assert store.query_rows("SELECT count() FROM owners WHERE pattern = 'during-analyst-query'")[0][0] == 1
    store.analyst().cancel(tag)
    thread.join(60)
    assert not thread.is_alive() and "QUERY_WAS_CANCELLED" in str(outcome.get("error")), outcome


def test_analysts_can_be_confined_to_their_views(tmp_path: Path) -> None:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}", analyst_tables=analyst_views())
    store.migrate()
    try:
        for allowed in ("SELECT count() AS n FROM analyst_traces",
                        "WITH a AS (SELECT route FROM analyst_traces) SELECT count() AS n FROM a",
                        "SELECT count() AS n FROM analyst_findings JOIN owners_current ON 1 = 1",
                        "SELECT 1 AS n", "SELECT count() AS n FROM numbers(10)", "DESCRIBE TABLE analyst_traces"):
            assert store.query_readonly(allowed), allowed
        for refused in ("SELECT count() FROM traces", "SELECT * FROM default.traces",
                        "WITH a AS (SELECT * FROM traces) SELECT count() FROM a",
                        "SELECT count() FROM analyst_traces WHERE trace_id IN (SELECT trace_id FROM traces)",
                        "SELECT * FROM system.processes", "SELECT * FROM analyst_traces, audit_log",
                        "DESCRIBE TABLE traces", "SELECT * FROM merge(currentDatabase(), '^traces$')"):
            with pytest.raises(QueryRefused):
                store.query_readonly(refused)
    finally:
        store.close()


def test_a_server_dsn_for_analysts_is_never_the_writers_user() -> None:
    writer = "http://warden:secret@ch.example:8123/warden"
    with pytest.raises(SinkError, match="writer's user"):
        analyst_dsn(writer, "http://warden:other@ch.example:8123/warden")
    assert analyst_dsn(writer, "https://analyst:x@ch.example:8123/warden").startswith("https://analyst")
    # Unset: the writer's DSN, still vetted, read-only and limited (a warning says to set one).
    assert analyst_dsn(writer, None) == writer
    assert analyst_dsn("chdb:///var/ch", None) == "chdb:///var/ch"


def test_exposure_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.7")
    assert check_web_exposure(WardenSettings()) is None  # loopback, no token: allowed
    with pytest.raises(WebExposureError, match="WARDEN_QUERY_TOKEN"):
        check_web_exposure(WardenSettings(web_bind="0.0.0.0"))
    with pytest.raises(WebExposureError, match="at least 24"):
        check_web_exposure(WardenSettings(web_bind="0.0.0.0", query_token="short"))  # type: ignore[arg-type]
    assert check_web_exposure(WardenSettings(web_bind="0.0.0.0", query_token=TOKEN)) == TOKEN  # type: ignore[arg-type]
    assert bearer_matches(f"Bearer {TOKEN}", TOKEN) and bearer_matches(f"bearer {TOKEN}", TOKEN)
    assert not bearer_matches(f"Bearer {TOKEN}x", TOKEN) and not bearer_matches(TOKEN, TOKEN)
    assert not bearer_matches("", TOKEN) and not bearer_matches(f"Basic {TOKEN}", TOKEN)
    options = faust_web_options(WardenSettings())
    assert options["web_bind"] == "127.0.0.1"
    assert not any(options[f"web_{page}_enabled"] for page in ("router", "tables", "stats", "graph"))


# ---- against a running worker -------------------------------------------------------------------

def non_loopback_address() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


def http(port: int, path: str, *, host: str = "127.0.0.1", token: str | None = None,
         timeout: float = 60) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def sql_path(query: str) -> str:
    return "/sql?" + urllib.parse.urlencode({"q": query})


def listening_addresses(worker: WorkerProcess) -> set[str]:
    assert worker.proc is not None
    return {c.laddr.ip for c in psutil.Process(worker.proc.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == worker.web_port}


def metric(worker: WorkerProcess, name: str) -> float:
    for line in worker.get("/metrics").decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.integration
def test_a_default_worker_is_loopback_only_refuses_every_attack_and_serves_no_faust_pages(
        pipeline: Pipeline, tmp_path: Path) -> None:
    worker = pipeline.worker(extra={"WARDEN_ANALYST_MAX_EXECUTION_S": "600",
                                    "WARDEN_PLANTED_SECRET": SECRET_ENV}).start()
    try:
        assert listening_addresses(worker) == {"127.0.0.1"}
        other = non_loopback_address()
        if other is not None:
            with pytest.raises(OSError):
                socket.create_connection((other, worker.web_port), timeout=5).close()
        for page in ("/router", "/router/", "/table", "/table/", "/graph", "/stats"):
            assert http(worker.web_port, page)[0] == 404, page
        assert http(worker.web_port, "/")[0] in (200, 404)  # Faust's bare {"status": "OK"} at most
        assert b"router" not in http(worker.web_port, "/")[1]
        for name, template in ATTACKS.items():
            status, body = http(worker.web_port, sql_path(attack_text(template, tmp_path)))
            assert status == 400, (name, status, body[:300])
            assert SECRET_ENV.encode() not in body and b"root:" not in body, name
        assert not (tmp_path / "stolen.txt").exists()
        status, body = http(worker.web_port, sql_path("SELECT count() AS n FROM traces FINAL"))
        assert status == 200 and b'"n":' in body
        assert metric(worker, 'warden_analyst_queries_total{outcome="refused"}') >= len(ATTACKS) - 2

        # A query whose client goes away is killed in ClickHouse: otherwise the next one
        # would wait for it (the limit here is 600 s, longer than the client below waits).
        before = metric(worker, 'warden_analyst_queries_total{outcome="cancelled"}')
        with socket.create_connection(("127.0.0.1", worker.web_port)) as client:
            client.sendall(f"GET {sql_path(LONG_QUERY)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            wait_for(lambda: metric(worker, "warden_analyst_queries_in_flight") >= 1, 60,
                     "the long query to start", worker, 0.2)
        wait_for(lambda: metric(worker, 'warden_analyst_queries_total{outcome="cancelled"}') > before, 60,
                 "the abandoned query to be cancelled", worker, 0.5)
        status, body = http(worker.web_port, sql_path("SELECT 42 AS answer"), timeout=120)
        assert status == 200 and b'"answer":42' in body
    finally:
        worker.stop()


@pytest.mark.integration
def test_an_exposed_worker_needs_a_token_and_checks_it(pipeline: Pipeline) -> None:
    env = pipeline.env(0, extra={"WARDEN_WEB_BIND": "0.0.0.0"})
    refused = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "WARDEN_QUERY_TOKEN" in refused.stdout + refused.stderr

    token_file = pipeline.workdir / "query-token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    worker = pipeline.worker(extra={"WARDEN_WEB_BIND": "0.0.0.0", "WARDEN_QUERY_TOKEN_FILE": str(token_file)})
    worker.start()
    try:
        assert listening_addresses(worker) == {"0.0.0.0"}
        query = sql_path("SELECT 1 AS one")
        assert http(worker.web_port, query)[0] == 401
        assert http(worker.web_port, query, token="wrong-" + TOKEN)[0] == 401
        assert http(worker.web_port, query, token=TOKEN[:-1])[0] == 401
        host = non_loopback_address() or "127.0.0.1"
        status, body = http(worker.web_port, query, host=host, token=TOKEN)
        assert status == 200 and b'"one":1' in body
        assert http(worker.web_port, "/healthz", host=host)[0] == 200
        assert metric(worker, 'warden_analyst_queries_total{outcome="unauthorized"}') >= 3

        # `warden sql` sends the token it is configured with.
        cli_env = {**worker.env, "WARDEN_WEB_HOST": host, "WARDEN_WEB_PORT": str(worker.web_port)}
        answer = subprocess.run([sys.executable, "-m", "streams.cli", "sql", "SELECT 7 AS seven", "-o", "json"],
                                cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120)
        assert answer.returncode == 0 and json.loads(answer.stdout) == {"seven": 7}, answer.stderr
        no_token = {k: v for k, v in cli_env.items() if k != "WARDEN_QUERY_TOKEN_FILE"}
        denied = subprocess.run([sys.executable, "-m", "streams.cli", "sql", "SELECT 7"], cwd=REPO,
                                env=no_token, capture_output=True, text=True, timeout=120)
        assert denied.returncode != 0 and "WARDEN_QUERY_TOKEN" in denied.stdout + denied.stderr
    finally:
        worker.stop()


def self_signed(directory: Path, address: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and ``address``) and its key, PEM."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "warden-test")])
    now = datetime.datetime.now(datetime.UTC)
    addresses = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address(address)}
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(a) for a in addresses]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = directory / "web.pem", directory / "web-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    os.chmod(keyfile, 0o600)
    return certfile, keyfile


@pytest.mark.integration
def test_the_web_server_speaks_tls_when_given_a_certificate(pipeline: Pipeline) -> None:
    import ssl
    import time

    host = non_loopback_address() or "127.0.0.1"
    certfile, keyfile = self_signed(pipeline.workdir, host)
    worker = pipeline.worker(extra={"WARDEN_WEB_BIND": "0.0.0.0", "WARDEN_QUERY_TOKEN": TOKEN,
                                    "WARDEN_WEB_TLS_CERTFILE": str(certfile),
                                    "WARDEN_WEB_TLS_KEYFILE": str(keyfile)})
    trusted = ssl.create_default_context(cafile=str(certfile))
    url = f"https://{host}:{worker.web_port}"
    with open(worker.log_path, "ab") as log:
        worker.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=worker.env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert worker.proc.poll() is None, worker.log_tail()
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=5, context=trusted).close()
                break
            except OSError:
                assert time.monotonic() < deadline, worker.log_tail()
                time.sleep(0.5)
        request = urllib.request.Request(f"{url}{sql_path('SELECT 5 AS five')}",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=60, context=trusted) as response:
            assert b'"five":5' in response.read()
        with pytest.raises(OSError):  # plain HTTP on the TLS port gets no answer
            urllib.request.urlopen(f"http://{host}:{worker.web_port}/healthz", timeout=5).close()
        cli_env = {**worker.env, "WARDEN_WEB_HOST": host, "WARDEN_WEB_PORT": str(worker.web_port)}
        answer = subprocess.run([sys.executable, "-m", "streams.cli", "sql", "SELECT 6 AS six", "-o", "json"],
                                cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120)
        assert answer.returncode == 0 and json.loads(answer.stdout) == {"six": 6}, answer.stderr
    finally:
        worker.stop()


def test_query_attacks_are_listed_in_the_security_doc() -> None:
    text = (REPO / "docs" / "SECURITY.md").read_text()
    assert "## Query port" in text
    assert "tests/test_security_query.py" in text
