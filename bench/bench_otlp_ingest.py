"""OTLP ingest throughput (spans/s) beside native ``InferenceTrace`` decoding (traces/s).

What the ingest agent does per Kafka message, in process, without the broker: decode one
``ExportTraceServiceRequest`` (protobuf, or OTLP/JSON with hex ids), map its spans
(``streams.otlp.map_request``) and serialise each trace as the JSON the raw topic carries.
Beside it, what ``govern`` does first with a native record: ``streams.ingest.decode_trace``
on the same traces' JSON bytes. Spans are made with the OpenTelemetry SDK and encoded by
its OTLP encoders: exports mixing of agent runs (invoke_agent, two chats,
execute_tool), plain chats, failed calls, older-name spans and non-GenAI spans (80 per export), each chat
carrying a ~0.5 KB conversation.

Run: ``nice .venv/bin/python bench/bench_otlp_ingest.py [--exports 200]``; writes
bench/results/bench_otlp_ingest.json with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "bench_otlp_ingest.json"
sys.path.insert(0, str(ROOT))

from streams.config import CONFIG_DIR  # noqa: E402
from streams.ingest import decode_trace  # noqa: E402
from streams.otlp import OtlpMapping, decode_request, map_request  # noqa: E402
from tests.otlp_spans import SpanRecorder, otlp_json, otlp_proto  # noqa: E402


def exports(count: int) -> list[list[Any]]:
    rec = SpanRecorder(service="bench-api")
    out = []
    for _ in range(count):
        for i in range(12):  # 12 × (4 agent spans + chat + legacy) + 4 × (failed + plain) = 80 spans
            rec.agent_run(agent=f"agent-{i % 3}")
            rec.chat()
            rec.legacy_chat()
            if i % 3 == 0:
                rec.chat(error="429")
                rec.plain()
        out.append(rec.take())
    return out


def best_rate(work: Any, items: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return items / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exports", type=int, default=200)
    args = parser.parse_args()
    mapping = OtlpMapping.load(CONFIG_DIR / "otlp-mapping.yaml")
    batches = exports(args.exports)
    spans = sum(len(b) for b in batches)
    encoded = {"otlp_proto": [otlp_proto(b) for b in batches], "otlp_json": [otlp_json(b) for b in batches]}
    traces = [t for raw in encoded["otlp_proto"] for t in map_request(decode_request(raw), mapping).traces]
    native = [t.model_dump_json(exclude_none=True).encode() for t in traces]
    load_before = os.getloadavg()

    def ingest(messages: list[bytes]) -> None:
        for raw in messages:
            for trace in map_request(decode_request(raw), mapping).traces:
                trace.model_dump_json(exclude_none=True)

    result: dict[str, Any] = {
        "machine": f"{platform.machine()} x{os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "load_avg_1m_before": round(load_before[0], 2),
        "exports": len(batches), "spans": spans, "traces_mapped": len(traces),
        "bytes_per_export": {k: round(sum(map(len, v)) / len(v)) for k, v in encoded.items()},
    }
    for name, messages in encoded.items():
        rate = best_rate(lambda m=messages: ingest(m), spans)
        result[f"{name}_spans_per_s"] = round(rate)
        result[f"{name}_traces_per_s"] = round(rate * len(traces) / spans)
    result["native_traces_per_s"] = round(best_rate(lambda: [decode_trace(b) for b in native], len(native)))
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    RESULTS.write_text(json.dumps([result], indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
