"""The traffic simulator (streams/sim): determinism by seed, realistic rates, the truth
file, scenarios that change what they say and nothing else, echoes of a user's own PII
told apart from leaks, the shipped corpus (nothing read from outside the repository).
Pure Python, no Kafka: ~15 s at ci scale."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from streams.ingest import decode_trace
from streams.sim.catalog import ROUTES
from streams.sim.corpus import CORPUS_DIR, load_domains
from streams.sim.day import DEFAULT_START, SimDay
from streams.sim.publish import aligned_start
from streams.sim.scenarios import SCENARIOS, parse_incident
from streams.sim.score import score

HOURS = 2.0


@pytest.fixture(scope="module")
def day() -> SimDay:
    return SimDay(seed=5, hours=HOURS, scale=1.0)


@pytest.fixture(scope="module")
def quiet_day() -> SimDay:
    return SimDay(seed=5, hours=HOURS, scale=1.0, incidents=[])


def test_same_seed_same_day_other_seed_other_day() -> None:
    a = SimDay(seed=9, hours=0.5, scale=0.5).traces()
    assert a == SimDay(seed=9, hours=0.5, scale=0.5).traces()
    assert [t["trace_id"] for t in a] != [t["trace_id"] for t in SimDay(seed=10, hours=0.5, scale=0.5).traces()]


def test_every_trace_is_valid_and_in_time_order(day: SimDay) -> None:
    traces = day.traces()
    assert all(a["timestamp"] <= b["timestamp"] for a, b in zip(traces, traces[1:], strict=False))
    for trace in traces[::50]:
        decode_trace(json.dumps(trace).encode())  # the govern agent's own validation


def test_background_rates_are_realistic(quiet_day: SimDay) -> None:
    traces = quiet_day.traces()
    n = len(traces)
    errors = sum(t["status"] == "error" for t in traces) / n
    length = sum(t["finish_reasons"] == ["length"] for t in traces) / n
    assert 0.002 < errors < 0.012
    assert 0.005 < length < 0.05
    routes = Counter(t["route"] for t in traces)
    assert set(routes) == {r.name for r in ROUTES}
    # ~1.3 requests/s over the routes; agent runs add calls
    assert 1.0 * HOURS * 3600 < n < 3.0 * HOURS * 3600


def test_ab_split_and_agent_runs(quiet_day: SimDay) -> None:
    traces = quiet_day.traces()
    ab = Counter(t["request_model"] for t in traces if t["route"] == "assistant-ab" and t["attempt"] == 1)
    share = ab["claude-3-5-haiku"] / sum(ab.values())
    assert 0.12 < share < 0.28
    runs = Counter(t["trace_id"] for t in traces if t["route"] == "trip-agent")
    steps = list(runs.values())
    assert min(steps) >= 1 and max(steps) <= 16
    assert 2.5 < sum(steps) / len(steps) < 5.0
    tool_steps = [t for t in traces if t["route"] == "trip-agent" and t["tool_calls"]]
    assert tool_steps and all(t["finish_reasons"] == ["tool_calls"] for t in tool_steps)


def test_users_paste_their_own_pii_and_answers_echo_it(quiet_day: SimDay) -> None:
    echoed = 0
    for t in quiet_day.traces():
        user = t["input_messages"][-1]["content"] if t["input_messages"] else ""
        answer = " ".join(m["content"] for m in t["output_messages"])
        if "@" in user and "reach me at" in user + answer or "contact is" in user:
            echoed += any(w.strip(".") in answer for w in user.split() if "@" in w)
    assert echoed > 5


def test_daily_cycle_peaks_where_the_route_says() -> None:
    day = SimDay(seed=1, hours=24, scale=1.0, incidents=[])
    spec = next(r for r in ROUTES if r.name == "assistant-ab")
    at = [r.at for r in day.requests(spec)]
    hour = Counter(int((a - day.start) // 3600) for a in at)
    peak, trough = int(spec.peak_hour), int(spec.peak_hour + 12) % 24
    assert hour[peak] > 1.8 * hour[trough]


def test_scenarios_change_their_route_only(day: SimDay, quiet_day: SimDay) -> None:
    stable = {r["route"] for r in day.truth()["routes"] if r["stable"]}
    assert len(stable) >= 3
    for route in stable:
        assert [t for t in day.traces() if t["route"] == route] == \
            [t for t in quiet_day.traces() if t["route"] == route]


def test_error_burst_on_one_arm() -> None:
    start = DEFAULT_START
    burst = parse_incident("error_burst@assistant-ab:0.5:900,model=claude-3-5-haiku,error_rate=0.5", start, HOURS)
    day = SimDay(seed=2, hours=HOURS, incidents=[burst])
    window = [t for t in day.traces() if t["route"] == "assistant-ab"
              and burst.start <= _epoch(t["timestamp"]) < burst.end]
    arm = [t for t in window if t["request_model"] == "claude-3-5-haiku"]
    other = [t for t in window if t["request_model"] != "claude-3-5-haiku"]
    assert sum(t["status"] == "error" for t in arm) / len(arm) > 0.3
    assert sum(t["status"] == "error" for t in other) / len(other) < 0.05


def test_truth_file_lists_every_incident_with_its_expectation(tmp_path: Path) -> None:
    day = SimDay(seed=5, hours=HOURS, scale=0.3)
    paths = day.write(tmp_path / "day")
    truth = json.loads(paths["truth"].read_text())
    assert truth["traces"] == len(day.traces()) == sum(1 for _ in paths["traces"].open())
    families = {i["family"] for i in truth["incidents"]}
    assert families == set(SCENARIOS)
    for inc in truth["incidents"]:
        assert truth["stream_start_epoch"] <= inc["start_epoch"] < inc["end_epoch"] <= truth["stream_end_epoch"]
        assert inc["max_delay_s"] > 0
    control = next(i for i in truth["incidents"] if i["family"] == "registered_prompt_change")
    assert control["expected_kinds"] == [] and control["forbidden_kinds"]
    changes = [json.loads(line) for line in paths["changes"].read_text().splitlines()]
    assert [c["component_id"] for c in changes] == [f"{control['route']}-system"]
    owners = (paths["config"] / "owners.yaml").read_text()
    assert all(r.name in owners for r in ROUTES)


def test_score_counts_a_catch_and_a_false_alarm(day: SimDay) -> None:
    truth = day.truth()
    inc = truth["incidents"][0]
    stable = next(r["route"] for r in truth["routes"] if r["stable"])
    findings = [
        {"finding_id": "a", "kind": inc["expected_kinds"][0], "severity": "critical", "at": inc["start_epoch"] + 30,
         "subject": {"route": inc["route"], "model": inc["model"]}},
        {"finding_id": "b", "kind": "drift.scalar", "severity": "warning", "at": truth["stream_end_epoch"] - 5,
         "subject": {"route": stable, "model": "x"}},
        {"finding_id": "c", "kind": "change.owned", "severity": "info", "at": truth["stream_end_epoch"] - 5,
         "subject": {"route": stable, "model": "x"}},
    ]
    result = score(truth, findings)
    assert result.incidents[0].caught and result.incidents[0].delay_s == pytest.approx(30)
    assert [f["finding_id"] for f in result.false_alarms] == ["b"]


def test_shipped_corpus_has_ten_domains_of_distinct_prompts() -> None:
    domains = load_domains()
    assert len(domains) >= 10 and len(list(CORPUS_DIR.glob("*.json"))) == len(domains)
    for domain in domains.values():
        assert len(set(domain.prompts)) >= 50
        assert domain.system_prompts and domain.passages and domain.answers
    assert {r.domain for r in ROUTES} <= set(domains)


def test_published_day_ends_in_the_past_aligned_to_its_length() -> None:
    start = aligned_start(6, now=1_000_000.0)
    assert start % (6 * 3600) == 0 and start + 6 * 3600 <= 1_000_000.0


def _epoch(iso: str) -> float:
    from streams.sim.day import _epoch as parse

    return parse(iso)


EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
CARD = re.compile(r"\b4\d{3} \d{4} \d{4} \d{4}\b")


def _pii(text: str) -> set[str]:
    return {m.group(0).rstrip(".") for rx in (EMAIL, SSN, CARD) for m in rx.finditer(text)}


def _answer(trace: dict) -> str:
    return " ".join(m["content"] for m in trace["output_messages"])


def _prompt(trace: dict) -> str:
    return " ".join(m["content"] for m in trace["input_messages"])


def test_echoes_of_own_pii_are_not_leaks_and_leaks_are_where_the_truth_says() -> None:
    leak = parse_incident("pii_leak@network-support:0.5:1800,model=gpt-4o-mini", DEFAULT_START, HOURS)
    day = SimDay(seed=4, hours=HOURS, scale=0.5, incidents=[leak])
    echoes = leaks = 0
    for t in day.traces():
        found = _pii(_answer(t))
        foreign = found - _pii(_prompt(t))
        echoes += bool(found and not foreign)
        inside = (t["route"] == leak.route and t["request_model"] == leak.model
                  and leak.start <= _epoch(t["timestamp"]) < leak.end)
        if foreign:
            assert inside, f"PII absent from the input outside the leak: {foreign} in {t['route']}"
            leaks += 1
    assert echoes > 3  # users' own addresses confirmed back: an echo, which must stay quiet
    window = [t for t in day.traces() if t["route"] == leak.route and t["request_model"] == leak.model
              and leak.start <= _epoch(t["timestamp"]) < leak.end]
    assert 0.1 < leaks / len(window) < 0.35  # share=0.2 of the arm's answers


def test_traces_before_an_incident_are_those_of_the_quiet_day(day: SimDay, quiet_day: SimDay) -> None:
    for inc in day.scenarios:
        before = [t for t in day.traces() if t["route"] == inc.route and _epoch(t["timestamp"]) < inc.start]
        quiet = [t for t in quiet_day.traces() if t["route"] == inc.route and _epoch(t["timestamp"]) < inc.start]
        assert before == quiet, inc.name
        after = [t for t in day.traces() if t["route"] == inc.route and _epoch(t["timestamp"]) >= inc.start]
        assert after, f"{inc.name}: no traffic in its window"


def test_models_keep_their_own_token_and_latency_distributions(quiet_day: SimDay) -> None:
    from statistics import median

    from streams.sim.catalog import MODELS

    ok = [t for t in quiet_day.traces() if t["status"] == "ok" and t["finish_reasons"] == ["stop"]]
    by_model: dict[str, list[dict]] = {}
    for t in ok:
        by_model.setdefault(t["request_model"], []).append(t)
    for name, traces in by_model.items():
        profile = MODELS[name]
        out = median(t["output_tokens"] for t in traces)
        assert 0.7 * profile.out_median < out < 1.4 * profile.out_median, name
        ttft = median(t["ttft_ms"] for t in traces)
        assert 0.8 * profile.ttft_ms < ttft < 1.25 * profile.ttft_ms, name
    speed = {m: median(t["latency_ms"] / t["output_tokens"] for t in ts) for m, ts in by_model.items()}
    assert speed["claude-sonnet-4"] > speed["gpt-4o-mini"] > speed["gpt-4.1-nano"]
    system = [t["input_messages"][0] for t in ok if t["route"] == "helpdesk-answers"]
    assert all(m["role"] == "system" and "Retrieved context:" in m["content"] for m in system)


OPEN_AUDIT = """
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and isinstance(args[0], str) else None)
from streams.sim.day import SimDay
SimDay(seed=2, hours=0.5, scale=0.2).traces()
import json
print(json.dumps(opened))
"""


def test_the_simulator_reads_nothing_outside_the_repository(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    assert CORPUS_DIR.resolve().is_relative_to(repo / "streams" / "sim")
    run = subprocess.run([sys.executable, "-c", OPEN_AUDIT], cwd=tmp_path, env={"PYTHONPATH": str(repo)},
                         capture_output=True, text=True, check=True)
    opened = [Path(p).resolve() for p in json.loads(run.stdout.splitlines()[-1])]
    allowed = (repo, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())
    outside = [p for p in opened if not any(p.is_relative_to(a) for a in allowed)]
    assert not outside, f"the simulator read files outside the repository: {outside}"
    assert any(p.parent == CORPUS_DIR.resolve() for p in opened)


def test_warden_sim_day_writes_a_replayable_day(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from streams.cli import app

    out = tmp_path / "day"
    result = CliRunner().invoke(app, ["sim", "day", "--out", str(out), "--hours", "0.5", "--scale", "0.3",
                                      "--seed", "3", "--incident", "error_burst@assistant-ab:0.5:300"])
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "truth.json").read_text())
    assert [i["family"] for i in truth["incidents"]] == ["error_burst"]
    assert truth["traces"] == sum(1 for _ in (out / "traces.jsonl").open())
    assert (out / "config" / "owners.yaml").is_file()
