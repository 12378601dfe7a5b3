"""ErrorRateDetector: sliding-window error share with hysteresis (issue 3)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from detectors.breaker import BreakerPolicy, load_policy
from detectors.error_rate import HIGH, RECOVERED, ErrorRateConfig, ErrorRateDetector

SUBJECT = {"route": "checkout", "model": "gpt-4o"}


def time_only(**kw: object) -> ErrorRateConfig:
    base = dict(window_s=60, bucket_s=5, last_n=None, min_requests=20,
                open_threshold=0.5, close_threshold=0.2, renotify_s=None)
    return ErrorRateConfig(**{**base, **kw})


def feed(det: ErrorRateDetector, outcomes: list[bool], start: float, step: float) -> list:
    return [f for i, e in enumerate(outcomes) if (f := det.update(e, start + i * step))]


def test_trips_once_not_per_trace_and_carries_evidence() -> None:
    det = ErrorRateDetector(time_only(), SUBJECT)
    found = feed(det, [True] * 40, start=1000.0, step=0.5)
    assert [f.kind for f in found] == [HIGH]
    f = found[0]
    assert f.severity == "critical" and f.subject == SUBJECT
    assert f.score == pytest.approx(1.0) and f.threshold == 0.5
    assert f.evidence["requests"] == 20 and f.evidence["window"] == "time"
    json.dumps(f.to_dict())


def test_no_decision_below_min_requests() -> None:
    det = ErrorRateDetector(time_only(), SUBJECT)
    assert feed(det, [True] * 19, start=0.0, step=1.0) == []
    assert det.window()[0] == "none"


def test_hysteresis_keeps_tripped_between_thresholds_then_recovers() -> None:
    det = ErrorRateDetector(time_only(), SUBJECT)
    assert [f.kind for f in feed(det, [True] * 20, 0.0, 1.0)] == [HIGH]
    # 35% errors: below open (50%) but above close (20%): no recovery, no flapping.
    mixed = [i % 20 < 7 for i in range(200)]
    assert feed(det, mixed, 100.0, 0.25) == []
    assert det.tripped
    found = feed(det, [False] * 200, 200.0, 0.25)
    assert [(f.kind, f.severity) for f in found] == [(RECOVERED, "info")]
    assert found[0].score <= 0.2 and found[0].threshold == 0.2


def test_old_buckets_leave_the_time_window() -> None:
    det = ErrorRateDetector(time_only(), SUBJECT)
    feed(det, [True] * 10 + [False] * 10, 0.0, 1.0)
    assert det.rate == pytest.approx(0.5)
    feed(det, [False] * 20, 70.0, 1.0)  # the errors are now older than 60 s
    assert det.rate == 0.0


def test_late_events_older_than_window_are_ignored_in_window_ones_count() -> None:
    det = ErrorRateDetector(time_only(min_requests=1), SUBJECT)
    det.update(False, 1000.0)
    det.update(True, 900.0)  # 100 s late: outside the window
    assert det.window() == ("time", 1, 0)
    det.update(True, 990.0)  # 10 s late: inside
    assert det.window() == ("time", 2, 1)


def test_count_window_decides_for_quiet_routes() -> None:
    cfg = time_only(last_n=30)
    det = ErrorRateDetector(cfg, SUBJECT)
    # One request every 10 s: the 60 s window never holds 20 requests.
    found = feed(det, [True, False] * 15, 0.0, 10.0)
    assert [f.kind for f in found] == [HIGH]
    assert found[0].evidence["window"] == "count"


def test_count_window_forgets_after_a_long_silence() -> None:
    det = ErrorRateDetector(time_only(last_n=30, count_window_max_age_s=600), SUBJECT)
    feed(det, [True] * 19, 0.0, 10.0)
    det.update(False, 5000.0)
    assert det._filled == 1


def test_renotify_reminds_while_still_high() -> None:
    det = ErrorRateDetector(time_only(renotify_s=30), SUBJECT)
    found = feed(det, [True] * 200, 0.0, 1.0)
    assert [f.kind for f in found] == [HIGH] * len(found)
    assert [f.evidence["repeat"] for f in found] == [False] + [True] * (len(found) - 1)
    gaps = [b.at - a.at for a, b in zip(found, found[1:], strict=False)]
    assert gaps and all(g >= 30 for g in gaps)


def test_state_roundtrip_is_compact_json_and_continues_identically() -> None:
    cfg = ErrorRateConfig(min_requests=10, open_threshold=0.3, close_threshold=0.1)
    a = ErrorRateDetector(cfg, SUBJECT)
    feed(a, [i % 3 == 0 for i in range(5000)], 0.0, 0.05)
    state = json.loads(json.dumps(a.to_state()))
    assert len(json.dumps(state)) < 1500
    b = ErrorRateDetector.from_state(state, cfg)
    tail = [i % 2 == 0 for i in range(300)]
    assert [f.to_dict() for f in feed(a, tail, 250.0, 0.1)] == [
        f.to_dict() for f in feed(b, tail, 250.0, 0.1)
    ]


def test_from_state_with_a_new_bucket_width_drops_buckets_not_the_count_window() -> None:
    a = ErrorRateDetector(ErrorRateConfig(min_requests=5), SUBJECT)
    feed(a, [True] * 10, 0.0, 1.0)
    b = ErrorRateDetector.from_state(a.to_state(), ErrorRateConfig(min_requests=5, bucket_s=10))
    assert b._time_window() == (0, 0) and b._filled == 10 and b.tripped


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"open_threshold": 0.2, "close_threshold": 0.3}, "close_threshold"),
        ({"window_s": None, "last_n": None}, "window_s or last_n"),
        ({"window_s": 4, "bucket_s": 5}, "bucket_s"),
        ({"last_n": 10, "min_requests": 20}, "min_requests"),
        ({"window_s": 1e6, "bucket_s": 1}, "buckets"),
    ],
)
def test_config_errors_name_the_field(fields: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        ErrorRateConfig(**fields)


def test_policy_supplies_versioned_config_with_scope_overrides() -> None:
    policy = BreakerPolicy.model_validate({
        "version": "t1",
        "scopes": [{"name": "pay", "match": {"route": "pay*"},
                    "error_rate": {"open_threshold": 0.1, "close_threshold": 0.02}}],
    })
    pay = policy.error_rate_for({"route": "payments", "model": "m"})
    other = policy.error_rate_for({"route": "search", "model": "m"})
    assert (pay.open_threshold, pay.version) == (0.1, "t1")
    assert (other.open_threshold, other.version) == (0.25, "t1")
    det = ErrorRateDetector(pay, SUBJECT)
    f = feed(det, [True] * 60, 0.0, 0.25)[0]
    assert f.evidence["config_version"] == "t1"
    assert load_policy().error_rate_for(SUBJECT).version == load_policy().version


@settings(max_examples=60, deadline=None)
@given(
    outcomes=st.lists(st.booleans(), min_size=1, max_size=400),
    gaps=st.lists(st.floats(min_value=-3.0, max_value=20.0), min_size=1, max_size=400),
    cut=st.integers(min_value=0, max_value=400),
)
def test_findings_alternate_and_survive_a_restart_anywhere(
    outcomes: list[bool], gaps: list[float], cut: int
) -> None:
    cfg = ErrorRateConfig(min_requests=5, last_n=50, open_threshold=0.4, close_threshold=0.15,
                          renotify_s=None)
    times, t = [], 1000.0
    for i in range(len(outcomes)):
        t += gaps[i % len(gaps)]
        times.append(t)
    straight = ErrorRateDetector(cfg, SUBJECT)
    ref = [straight.update(e, at) for e, at in zip(outcomes, times, strict=True)]
    kinds = [f.kind for f in ref if f]
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))
    assert not kinds or kinds[0] == HIGH
    restarted = ErrorRateDetector(cfg, SUBJECT)
    got = []
    for i, (e, at) in enumerate(zip(outcomes, times, strict=True)):
        if i == cut:
            restarted = ErrorRateDetector.from_state(json.loads(json.dumps(restarted.to_state())), cfg)
        got.append(restarted.update(e, at))
    assert [f and f.to_dict() for f in got] == [f and f.to_dict() for f in ref]
