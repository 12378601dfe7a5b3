"""Helpers of the serving-layer tests: the README's examples, a loopback OpenAI stand-in, and
``warden otlp serve`` as a process."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.infra import REPO, free_port
from tests.worker_proc import WorkerProcess

README = REPO / "README.md"


def readme_example(name: str) -> str:
    """The fenced block that follows ``<!-- example: name -->`` in the README."""
    found = re.search(rf"<!-- example: {re.escape(name)} -->\s*```\w*\n(.*?)```", README.read_text(), re.S)
    if not found:
        raise AssertionError(f"README has no example {name!r}")
    return found.group(1)


class MockOpenAI:
    """A loopback server answering ``POST /v1/chat/completions`` as OpenAI does, so the real
    ``openai`` client (and its instrumentation) runs unchanged; paths under ``/fail`` get 429."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path.startswith("/fail"):
                    status, body = 429, {"error": {"message": "rate limited", "type": "rate_limit_exceeded"}}
                else:
                    status = 200
                    body = {"id": "chatcmpl-mock", "object": "chat.completion", "created": int(time.time()),
                            "model": "gpt-4o-mini-2024-07-18",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": "Your order has shipped."}}],
                            "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}}
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


class Receiver(WorkerProcess):
    """``warden otlp serve`` as a process (started, watched and stopped like a worker)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        port = free_port()
        super().__init__(env, port, log_path, ("otlp", "serve", "--port", str(port)))
        self.url = f"http://127.0.0.1:{port}"

    def post(self, body: bytes, content_type: str, token: str | None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        sent = {"Content-Type": content_type, **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{self.url}/v1/traces", data=body, headers=sent, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)
