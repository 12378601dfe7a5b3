"""Cost regressions on synthetic streams with known change points, and their drivers."""

from __future__ import annotations

import json
import random

import pytest

from detectors.cost import (
    CostPolicy,
    CostRegressionDetector,
    CostUnit,
    ModelUsage,
    RegressionConfig,
    TokenPrice,
    siegmund_limit,
)
from detectors.cost.governor import CostGovernor
from detectors.cost.synthetic import generate

POLICY = CostPolicy(version="budgets-test")
MAX_DELAY_SPANS = 3000  # about 50 minutes of this route's traffic (1 call per second)


def run_stream(stream, governor=None):
    """Feed a synthetic stream; return (post-change spans seen, finding) per regression."""
    gov = governor or CostGovernor(stream.catalog, POLICY)
    out, after = [], 0
    for s in stream.samples:
        after += s.at >= stream.change_at
        out += [(after, f) for f in gov.update(s, stream.events) if f.kind == "cost.regression"]
    return out


@pytest.mark.parametrize("scenario", ["prompt_growth", "model_switch", "price_change",
                                      "agent_loop"])
def test_change_is_detected_quickly_with_its_driver_and_event(scenario):
    stream = generate(scenario, n_before=9000, n_after=4000, seed=11)
    found = run_stream(stream)
    assert [f for n, f in found if n == 0] == []                  # nothing before the change
    early = [f for n, f in found if 0 < n <= MAX_DELAY_SPANS]
    assert early, f"{scenario}: not detected within {MAX_DELAY_SPANS} calls"
    named = [f for f in early if f.evidence["driver"] == stream.expected_driver]
    assert named, [f.evidence["driver"] for f in early]
    f = named[0]
    assert f.evidence["direction"] == "up" and f.evidence["relative_change"] > 0.1
    own = stream.events[-1]
    kinds = [(e["kind"], e["id"]) for e in f.evidence["events"]]
    assert (own.kind, own.id) in kinds                            # the change is named
    assert ("prompt_template", "billing-faq") not in kinds        # another route's change
    assert ("guardrail_policy", "default") not in kinds           # days before
    assert f.evidence["config_version"] == "budgets-test"
    json.dumps(f.to_dict())


def test_agent_loop_is_attributed_to_steps_per_run_on_the_action_metric():
    stream = generate("agent_loop", n_before=9000, n_after=4000, seed=4)
    actions = [f for n, f in run_stream(stream)
               if f.subject["metric"] == "cost_per_successful_action"]
    assert actions and actions[0].evidence["driver"] == "agent_steps"
    assert actions[0].subject["runs"] == "agent"
    assert actions[0].evidence["driver_shifts"]["agent_steps"] > 0.4   # about log 2


def test_stable_stream_of_100k_calls_raises_no_regression():
    stream = generate("stable", n_before=100_000, n_after=0, seed=5)
    gov = CostGovernor(stream.catalog, POLICY)
    assert run_stream(stream, gov) == []
    assert sum(d.cusum.n for d in gov.per_request.values()) > 20_000   # it did watch


def test_state_round_trip_mid_stream_gives_identical_findings():
    stream = generate("price_change", n_before=6000, n_after=3000, seed=2)
    a = CostGovernor(stream.catalog, POLICY)
    half = len(stream.samples) // 2
    for s in stream.samples[:half]:
        a.update(s, stream.events)
    state = json.loads(json.dumps(a.to_state()))
    b = CostGovernor.from_state(state, stream.catalog, POLICY)
    fa = [f.to_dict() for s in stream.samples[half:] for f in a.update(s, stream.events)]
    fb = [f.to_dict() for s in stream.samples[half:] for f in b.update(s, stream.events)]
    assert fa == fb and any(f["kind"] == "cost.regression" for f in fa)
    per_key = [len(json.dumps(d.to_state())) for d in a.per_action.values()]
    assert max(per_key) < 10_000                                   # compact per-key state


PRICE = TokenPrice(2.0, 8.0, 0.5)


def unit(rng: random.Random, t: float, *, steps: int = 1, retry_rate: float = 0.0,
         carried: float = 0.0, outlier: bool = False) -> CostUnit:
    attempts = steps + sum(rng.random() < retry_rate for _ in range(steps))
    u = ModelUsage("openai/gpt-4.1", attempts * 1500 * rng.lognormvariate(0, 0.6), 0.0,
                   attempts * 200 * rng.lognormvariate(0, 0.7), PRICE)
    own = u.cost_at(PRICE) * (1000 if outlier else 1)
    return CostUnit(at=t, cost_usd=own * (1 + carried), own_cost_usd=own, usage=(u,),
                    steps=steps, attempts=attempts)


def first_alarm(det, units):
    return next(((i, f) for i, u in enumerate(units) if (f := det.update(u)) is not None),
                (None, None))


def test_retries_and_failures_are_named_as_drivers():
    for kind, after in (("retries", dict(steps=3, retry_rate=0.8)),
                        ("failures", dict(steps=3, carried=1.0))):
        rng = random.Random(9)
        det = CostRegressionDetector({"route": "r"}, "cost_per_successful_action")
        assert first_alarm(det, [unit(rng, t, steps=3) for t in range(3000)]) == (None, None)
        i, f = first_alarm(det, [unit(rng, 3000 + t, **after) for t in range(2000)])
        assert i is not None and i < 300 and f.evidence["driver"] == kind


def test_heavy_tails_alone_raise_nothing():
    rng = random.Random(3)
    det = CostRegressionDetector({"route": "r"})
    units = [unit(rng, t, outlier=rng.random() < 0.01) for t in range(30_000)]
    units += [unit(rng, 30_000 + t, outlier=True) for t in range(5)]    # a burst of five
    assert first_alarm(det, units) == (None, None)


def test_drops_are_reported_only_when_two_sided():
    for two_sided in (False, True):
        rng = random.Random(5)
        det = CostRegressionDetector({"route": "r"}, config=RegressionConfig(two_sided=two_sided))
        units = [unit(rng, t) for t in range(3000)]
        cheap = [CostUnit(at=u.at + 3000, cost_usd=u.cost_usd / 3, own_cost_usd=u.cost_usd / 3,
                          usage=u.usage) for u in units[:1500]]
        i, f = first_alarm(det, units + cheap)
        if two_sided:
            assert f is not None and f.evidence["direction"] == "down"
            assert f.evidence["driver"] == "billing"  # tokens and prices did not move
        else:
            assert f is None


def test_siegmund_limits_grow_with_arl0_and_shrink_with_k():
    assert siegmund_limit(0.5, 930) == pytest.approx(5.0, abs=0.05)
    assert siegmund_limit(0.5, 1e6) > siegmund_limit(0.5, 1e4)
    assert siegmund_limit(1.0, 1e6) < siegmund_limit(0.25, 1e6)
    with pytest.raises(ValueError, match="k > 0"):
        siegmund_limit(0.0, 100)
