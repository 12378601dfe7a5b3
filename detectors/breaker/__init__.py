"""Circuit-breaker policy: targets, the versioned policy, the engine, client admission rules.

Pure like the rest of ``detectors/``: the worker feeds findings and traffic, publishes the
returned :class:`Transition` records; the serving client applies :func:`admit` and
:func:`allow_when_stale` locally.
"""

from detectors.breaker.admission import CLOSED, HALF_OPEN, OPEN, admit, allow_when_stale
from detectors.breaker.engine import BreakerPolicyEngine
from detectors.breaker.policy import (
    DEFAULT_POLICY_PATH,
    BreakerPolicy,
    BreakerSettings,
    ScopePolicy,
    TripRule,
    load_policy,
)
from detectors.breaker.records import Transition
from detectors.breaker.targets import (
    SCOPE_KEYS,
    covering_targets,
    covers,
    parse_target,
    scope_of,
    target_key,
)

__all__ = [
    "CLOSED",
    "DEFAULT_POLICY_PATH",
    "HALF_OPEN",
    "OPEN",
    "SCOPE_KEYS",
    "BreakerPolicy",
    "BreakerPolicyEngine",
    "BreakerSettings",
    "ScopePolicy",
    "Transition",
    "TripRule",
    "admit",
    "allow_when_stale",
    "covering_targets",
    "covers",
    "load_policy",
    "parse_target",
    "scope_of",
    "target_key",
]
