"""Breaker targets: canonical strings for scopes such as ``route=checkout,model=gpt-4o``.

A target is the part of a scope a breaker acts on. Its string form is the key of the
compacted breaker topic, so it must be canonical: keys sorted, empty values dropped,
``%``, ``,`` and ``=`` in values percent-encoded (so any value round-trips).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

# The scope keys a breaker may act on. Deployment is a finer cut than model.
SCOPE_KEYS: tuple[str, ...] = ("route", "model", "deployment", "tenant")
# Keys whose targets take capacity from a route (a tenant-scoped target only blocks one tenant).
CAPACITY_KEYS: tuple[str, ...] = ("model", "deployment")

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_ESCAPES = (("%", "%25"), (",", "%2C"), ("=", "%3D"))


def _quote(value: str) -> str:
    for raw, enc in _ESCAPES:
        value = value.replace(raw, enc)
    return value


def _unquote(value: str) -> str:
    for raw, enc in reversed(_ESCAPES):
        value = value.replace(enc, raw)
    return value


def scope_of(subject: Mapping[str, object], keys: Iterable[str] = SCOPE_KEYS) -> dict[str, str]:
    """The breaker scope inside a finding subject or trace: only ``keys``, non-empty values.

    >>> scope_of({"route": "checkout", "model": "gpt-4o", "score_kind": "x", "tenant": ""})
    {'route': 'checkout', 'model': 'gpt-4o'}
    """
    keyset = set(keys)
    return {k: str(v) for k, v in subject.items() if k in keyset and v not in (None, "")}


def target_key(scope: Mapping[str, str]) -> str:
    """Canonical target string of a scope mapping (sorted keys, empty values dropped).

    >>> target_key({"model": "gpt-4o", "route": "checkout"})
    'model=gpt-4o,route=checkout'
    >>> target_key({"route": "a,b=c", "tenant": ""})
    'route=a%2Cb%3Dc'
    """
    parts = []
    for key in sorted(scope):
        value = scope[key]
        if value in (None, ""):
            continue
        if not _KEY.match(key):
            raise ValueError(
                f"target key {key!r} is not a lower-case identifier; use one of {SCOPE_KEYS}"
            )
        parts.append(f"{key}={_quote(str(value))}")
    return ",".join(parts)


def parse_target(target: str) -> dict[str, str]:
    """Scope mapping back from a target string (inverse of :func:`target_key`).

    >>> parse_target("model=gpt-4o,route=a%2Cb%3Dc")
    {'model': 'gpt-4o', 'route': 'a,b=c'}
    """
    scope: dict[str, str] = {}
    if not target:
        return scope
    for part in target.split(","):
        key, sep, value = part.partition("=")
        if not sep or not _KEY.match(key) or not value:
            raise ValueError(
                f"target {target!r}: part {part!r} is not key=value; "
                "write targets like 'route=checkout,model=gpt-4o'"
            )
        scope[key] = _unquote(value)
    return scope


def covers(target_scope: Mapping[str, str], scope: Mapping[str, str]) -> bool:
    """Whether a breaker on ``target_scope`` applies to traffic of ``scope``:
    every key of the target is in the scope with the same value.

    >>> covers({"route": "checkout"}, {"route": "checkout", "model": "gpt-4o"})
    True
    >>> covers({"route": "checkout", "model": "gpt-4o"}, {"route": "checkout"})
    False
    """
    return all(scope.get(k) == v for k, v in target_scope.items())


def matches(pattern: Mapping[str, str], scope: Mapping[str, str]) -> bool:
    """Policy scope match: each pattern key is a glob (``*``, ``?``, ``[..]``) on that key;
    a key the scope lacks only matches ``*``.

    >>> matches({"route": "check*"}, {"route": "checkout", "model": "m"})
    True
    >>> matches({"tenant": "acme"}, {"route": "checkout"})
    False
    """
    for key, glob in pattern.items():
        value = scope.get(key)
        if value is None:
            if glob != "*":
                return False
        elif not fnmatch.fnmatchcase(value, glob):
            return False
    return True


def covering_targets(scope: Mapping[str, str]) -> list[str]:
    """Every target string whose breaker applies to traffic of ``scope`` (each non-empty
    subset of its scope keys), most specific first. A serving client can compute this
    once per distinct scope and cache it.

    >>> covering_targets({"route": "r", "model": "m"})
    ['model=m,route=r', 'model=m', 'route=r']
    """
    items = sorted(scope_of(scope).items())
    out: list[tuple[int, str]] = []
    for mask in range(1, 1 << len(items)):
        sub = {k: v for i, (k, v) in enumerate(items) if mask >> i & 1}
        out.append((-len(sub), target_key(sub)))
    return [t for _, t in sorted(out)]
