"""Dead letters never carry unredacted content (issue 17): a rejected record keeps its
position, size, SHA-256 and reason; its content travels only redacted, or not at all."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from detectors.redaction import RedactionPolicy, Redactor
from streams.config import WardenSettings
from streams.govern_step import govern_one
from streams.governor import Governor
from streams.guard.clock import EventTimeBounds
from streams.ingest import (
    MAX_REDACTED_DEAD_LETTER_BYTES,
    RejectedTrace,
    SourcePosition,
    dead_letter,
)
from streams.redaction import load_redactor
from tests.pipeline_helpers import TEST_KEY

EMAIL, CARD, PASSWORD = "jane.doe@example.com", "4111 1111 1111 1111", "Tr0ub4dor&3x!"
WHERE = SourcePosition("t.traces.raw.v1", 2, 41, "chat|gpt-4o")


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionPolicy(version="test"), b"k" * 32)


def letter(raw: bytes, redactor: Redactor | None, kind: str = "malformed_json") -> dict[str, object]:
    return dead_letter(raw, RejectedTrace(kind, "because"), WHERE, redactor).model_dump(mode="json")


@pytest.mark.parametrize("raw, kind", [
    # Not a trace: a JSON document with secrets under keys, in text and in JSON-in-strings.
    (json.dumps({"schema_version": 9, "input_messages": [{"content": f"mail {EMAIL}"}],
                 "metadata": {"password": PASSWORD, "note": json.dumps({"card": CARD})}}).encode(),
     "unsupported_schema_version"),
    (f'{{"trace_id": "x", "content": "card {CARD}", "password": "{PASSWORD}"'.encode(), "malformed_json"),
    (f"card {CARD} mail {EMAIL} password: {PASSWORD}".encode() + b"\xff\xfe", "invalid_utf8"),
    (b"[" * 5000 + f'"{EMAIL}", "{CARD}"'.encode(), "too_deep"),
])
def test_content_is_kept_only_redacted(redactor: Redactor, raw: bytes, kind: str) -> None:
    out = letter(raw, redactor, kind)
    assert out["original_b64"] == ""
    assert out["original_bytes"] == len(raw)
    assert out["original_sha256"] == hashlib.sha256(raw).hexdigest()
    carried = json.dumps(out, ensure_ascii=False)
    for value in (EMAIL, CARD, PASSWORD, "4111111111111111"):
        assert value not in carried, f"{value} carried in a {kind} dead letter"
    assert isinstance(out["original_redacted"], str) and out["original_redacted"]
    assert "[EMAIL_ADDRESS]" in out["original_redacted"] or "[CREDIT_CARD]" in out["original_redacted"]


def test_without_a_redactor_or_over_the_limit_the_content_is_dropped(redactor: Redactor) -> None:
    assert letter(f"mail {EMAIL}".encode(), None)["original_redacted"] is None
    big = (f"mail {EMAIL} " * (MAX_REDACTED_DEAD_LETTER_BYTES // 10)).encode()
    out = letter(big, redactor, "oversized")
    assert out["original_redacted"] is None and out["original_bytes"] == len(big)
    assert EMAIL not in json.dumps(out)


def test_the_worker_path_dead_letters_a_bad_record_redacted(tmp_path: Path) -> None:
    settings = WardenSettings(data_dir=tmp_path, pseudonym_key=TEST_KEY)
    governor = Governor.from_settings(settings, load_redactor(settings))
    raw = json.dumps({"trace_id": 7, "input_messages": f"my card is {CARD}, mail {EMAIL}"}).encode()
    step = govern_one(governor, raw, WHERE, {}, received=0.0, bounds=EventTimeBounds(), max_output_bytes=1 << 20)
    assert step.trace is None and step.dead is not None
    assert step.dead["error_kind"] == "schema_violation"
    assert CARD not in json.dumps(step.dead) and EMAIL not in json.dumps(step.dead)
    assert "[CREDIT_CARD]" in step.dead["original_redacted"]
