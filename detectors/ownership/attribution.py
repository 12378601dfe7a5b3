"""Which component most likely changed, and whether a ledger event owns the change.

``IdentityMix`` follows, per identity field (system fingerprint, model version, prompt
version ...), a slow baseline mix and a fast recent mix of the values seen in traffic;
a field "changed" when the two are at least ``identity_min_tv`` apart in total variation.
"""

from __future__ import annotations

from typing import Any

from detectors.ownership.ledger import ChangeLedger, LedgerEntry
from detectors.ownership.samples import IDENTITY_KINDS

# Order of suspicion when several identity fields changed at once: the provider side first
# (the silent-update case this exists for), then our serving, then our components.
FIELD_ORDER = ("system_fingerprint", "model_version", "response_model", "deployment", "prompt",
               "guardrail_policy", "retrieval_index", "toolset")
# Components a serving-side identity change can be owned by.
_SERVING_KINDS = {"model", "deployment", "routing_config"}
# With no identity change in traffic, what the moved signals point at.
_SIGNAL_HINTS = (
    ("refusal_rate", "guardrail_policy", "refusal rate moved: guardrail policy or provider safety"),
    ("tool_calls", "toolset", "tool-call mix moved: toolset or agent prompt"),
    ("embedding_centroid", "model", "completion content moved with no reported version change"),
    ("output_tokens", "model", "completion length moved with no reported version change"),
    ("finish_reasons", "model", "finish-reason mix moved with no reported version change"),
    ("error_rate", "deployment", "error rate moved: serving deployment or provider"),
    ("latency", "deployment", "latency moved: serving deployment or provider"),
    ("ttft", "deployment", "time to first token moved: serving deployment or provider"),
)
MAX_VALUES = 16


class IdentityMix:
    """Slow and fast mixes of identity values, with the first time each value was seen."""

    def __init__(self, memory: int = 5000, fast: int = 50) -> None:
        self.memory, self.fast = memory, fast
        # field -> value -> [slow weight, fast weight, first seen]
        self.values: dict[str, dict[str, list[float]]] = {}
        self.n = 0.0

    def update(self, identity: dict[str, str | None], at: float) -> None:
        self.n += 1
        a_slow, a_fast = 1.0 / min(self.n, self.memory), 1.0 / min(self.n, self.fast)
        for field, value in identity.items():
            if value is None:
                continue
            table = self.values.setdefault(field, {})
            if value not in table:
                if len(table) >= MAX_VALUES:
                    del table[min(table, key=lambda v: table[v][0] + table[v][1])]
                table[value] = [0.0, 0.0, at]
            for v, rec in table.items():
                hit = 1.0 if v == value else 0.0
                rec[0] += a_slow * (hit - rec[0])
                rec[1] += a_fast * (hit - rec[1])

    def changed(self, min_tv: float) -> list[dict[str, Any]]:
        """Identity fields whose recent mix left the baseline, in ``FIELD_ORDER``."""
        out = []
        for field in FIELD_ORDER:
            table = self.values.get(field)
            if not table:
                continue
            slow = sum(r[0] for r in table.values()) or 1.0
            fast = sum(r[1] for r in table.values()) or 1.0
            tv = 0.5 * sum(abs(r[0] / slow - r[1] / fast) for r in table.values())
            if tv >= min_tv:
                before = max(table, key=lambda v: table[v][0])
                after = max(table, key=lambda v: table[v][1])
                out.append({"field": field, "component_kind": IDENTITY_KINDS[field],
                            "from": before, "to": after, "changed_at": table[after][2],
                            "tv": round(tv, 3)})
        return out

    def seen(self, field: str) -> list[str]:
        """Values of a field currently in traffic (recent weight above 5%)."""
        return [v for v, r in self.values.get(field, {}).items() if r[1] >= 0.05]

    def rebaseline(self) -> None:
        """After a change: the recent mix becomes the baseline."""
        for table in self.values.values():
            for rec in table.values():
                rec[0] = rec[1]

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n, "values": {f: {v: [round(x, 5) for x in r[:2]] + [r[2]]
                                             for v, r in t.items()}
                                        for f, t in self.values.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any], memory: int, fast: int) -> IdentityMix:
        mix = cls(memory, fast)
        mix.n = float(state.get("n", 0.0))
        mix.values = {f: {v: list(r) for v, r in t.items()} for f, t in state.get("values", {}).items()}
        return mix


def _prompt_id(value: str) -> str:
    return value.rsplit("@", 1)[0]


def _relevant(entry: LedgerEntry, model: str, identity: IdentityMix) -> bool:
    """Whether an in-scope entry is about a component this (route, model) uses."""
    if entry.component_kind == "model":
        return entry.names(model)
    if entry.component_kind == "deployment":
        return any(entry.names(d) for d in identity.seen("deployment")) or not identity.seen("deployment")
    if entry.component_kind == "prompt":
        ids = {_prompt_id(v) for v in identity.seen("prompt")}
        return any(entry.names(i) for i in ids) or not ids
    return True


def _bare(field: str, value: str) -> str:
    return value.rsplit("@", 1)[1] if field == "prompt" and "@" in value else value


def match_ledger(ledger: ChangeLedger | None, route: str, model: str, tenants: list[str],
                 change_at: float, start: float, end: float, kinds: tuple[str, ...],
                 changed: list[dict[str, Any]], identity: IdentityMix
                 ) -> tuple[LedgerEntry, str] | None:
    """The ledger event that owns a change point, with how it matched (``version``,
    ``serving_window`` or ``window``).

    When identity fields changed in traffic, only an event that registered one of the new
    versions (or, for provider-side fields, a serving change of ours) owns it; otherwise any
    relevant event in scope within [start, end] does, the closest to ``change_at`` first.
    """
    if ledger is None:
        return None
    entries = [e for e in ledger.in_scope(route, start, end, tenants, kinds)
               if _relevant(e, model, identity)]
    if not entries:
        return None
    if not changed:
        return min(entries, key=lambda e: abs(e.at - change_at)), "window"
    for ch in changed:
        version = _bare(ch["field"], ch["to"])
        for e in sorted(entries, key=lambda e: abs(e.at - change_at)):
            if e.component_kind == ch["component_kind"] and version == e.new_version:
                return e, "version"
    provider = {c["field"] for c in changed} <= {"system_fingerprint", "model_version",
                                                  "response_model", "deployment"}
    serving = [e for e in entries if e.component_kind in _SERVING_KINDS]
    if provider and serving:
        return min(serving, key=lambda e: abs(e.at - change_at)), "serving_window"
    return None


def suspect(changed: list[dict[str, Any]], moved: list[str], route: str,
            model: str) -> dict[str, Any]:
    """The most likely component behind an unowned change."""
    if changed:
        ch = min(changed, key=lambda c: FIELD_ORDER.index(c["field"]))
        cid = model if ch["component_kind"] == "model" else (
            _prompt_id(ch["to"]) if ch["field"] == "prompt" else ch["to"] if ch["field"] == "deployment" else "*")
        return {**ch, "component_id": cid,
                "reason": f"{ch['field']} changed {ch['from']} -> {ch['to']} with no change event"}
    for signal, kind, reason in _SIGNAL_HINTS:
        if signal in moved:
            return {"field": None, "component_kind": kind,
                    "component_id": model if kind == "model" else route, "reason": reason}
    return {"field": None, "component_kind": "model", "component_id": model,
            "reason": "behaviour moved with no reported version change"}
