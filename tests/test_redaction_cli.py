"""``warden redact`` through typer's CliRunner, on an app built here."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from streams.cli_redact import register

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "deploy" / "config" / "redaction-policy.yaml"
ENV = {"WARDEN_REDACTION_KEY": "cli-test-key-0123456789"}


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from collapsing the group
        """Nothing."""

    return app


def test_stdin_to_stdout_with_original_offsets() -> None:
    lines = [{"text": "card 4111 1111 1111 1111 and mail ann@example.org"}, {"text": "nothing here"}]
    stdin = "\n".join(json.dumps(x) for x in lines) + "\n"
    result = CliRunner().invoke(_app(), ["redact", "--policy", str(POLICY)], input=stdin, env=ENV)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert rows[1] == {"text": "nothing here", "findings": []}
    first = rows[0]
    assert "4111" not in first["text"] and "ann@example.org" not in first["text"]
    spans = {f["entity"]: lines[0]["text"][f["start"] : f["end"]] for f in first["findings"]}
    assert spans == {"CREDIT_CARD": "4111 1111 1111 1111", "EMAIL_ADDRESS": "ann@example.org"}


def test_files_and_bad_lines(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"text": "ssn 536-22-1234"}\nnot json with 536-22-9999\n{"text": 5}\n')
    result = CliRunner().invoke(
        _app(), ["redact", "--input", str(src), "--output", str(dst), "--policy", str(POLICY)], env=ENV
    )
    assert result.exit_code == 1
    assert "2, 3" in result.output and "536-22-9999" not in result.output
    assert json.loads(dst.read_text())["text"] == "ssn [US_SSN]"


def test_missing_key_is_a_clear_error() -> None:
    result = CliRunner().invoke(_app(), ["redact", "--policy", str(POLICY)], input="", env={"WARDEN_REDACTION_KEY": ""})
    assert result.exit_code == 2
    assert "WARDEN_REDACTION_KEY" in result.output


def test_traces_come_out_as_the_worker_stores_them(tmp_path: Path) -> None:
    from detectors.redaction import RedactionPolicy, Redactor
    from streams.governor import redact_for_storage
    from streams.records import InferenceTrace
    from streams.redaction import plugin_recognizers
    from tests.pipeline_helpers import traces

    sent = list(traces(3, seed=8, trace_kb=0.3))
    sent[0]["input_messages"] = [{"role": "user", "content": "I'm Jane Roe, mail jane@example.org, card 4111 1111 1111 1111"}]
    sent[0]["output_messages"] = [{"role": "assistant", "content": "Noted, jane@example.org."}]
    sent[1]["tool_calls"] = [{"name": "login", "arguments": {"password": "Tr0ub4dor&3x!"}}]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    bad_line = json.dumps({"trace_id": 5, "input_messages": "ssn 536-22-9999"})
    src.write_text("\n".join([json.dumps(sent[0]), bad_line, json.dumps(sent[1]), json.dumps(sent[2])]) + "\n")
    result = CliRunner().invoke(_app(), ["redact", "--traces", "--input", str(src), "--output", str(dst),
                                         "--policy", str(POLICY)], env=ENV)
    assert result.exit_code == 1
    assert "2 (schema_violation)" in result.output and "536-22-9999" not in result.output

    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [o["trace_id"] for o in out] == [sent[0]["trace_id"], sent[1]["trace_id"], sent[2]["trace_id"]]
    text = json.dumps(out)
    for value in ("Jane Roe", "jane@example.org", "4111 1111 1111 1111", "Tr0ub4dor&3x!"):
        assert value not in text
    assert out[0]["redaction"]["counts"]["EMAIL_ADDRESS"] == 2 and out[0]["redaction"]["echoed"] == {"EMAIL_ADDRESS": 1}
    # Exactly what govern stores, as far as redaction goes: the same function, the same key.
    policy = RedactionPolicy.load(POLICY)
    redactor = Redactor(policy, ENV["WARDEN_REDACTION_KEY"].encode(), recognizers=plugin_recognizers(policy, ner=False))
    expected, _, _ = redact_for_storage(redactor, InferenceTrace.model_validate(sent[2]))
    assert out[2] == json.loads(json.dumps(expected))
