"""A stub OpenAI-compatible server on 127.0.0.1 for tests (no network): scripted replies, every
request recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_REQUESTS = 50  # the stub answers at most this many requests, then 503s


def completion(text: str, finish: str = "stop", ids: list[int] | None = None,
               lps: list[float] | None = None, **extra: Any) -> dict[str, Any]:
    """A /completions response body with one choice."""
    choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, **extra}
    if ids is not None:
        choice["logprobs"] = {"tokens": [f"token_id:{i}" for i in ids],
                              "token_logprobs": lps if lps is not None else [-0.5] * len(ids)}
    return {"id": "cmpl-1", "object": "text_completion", "choices": [choice]}


class Stub:
    """Serves scripted replies (dict = JSON 200, (status, bytes) = raw) and records requests."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.responder: Callable[[dict[str, Any]], Any] | None = None
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(body)
                    stub.paths.append(self.path)
                    stub.headers.append(dict(self.headers))
                    if len(stub.requests) > MAX_REQUESTS:
                        reply: Any = (503, b"too many requests in this test")
                    elif stub.responder is not None:
                        reply = stub.responder(body)
                    elif stub.replies:
                        reply = stub.replies.pop(0)
                    else:
                        reply = (503, b"stub script exhausted")
                status, raw = (200, json.dumps(reply).encode()) if isinstance(reply, dict) else reply
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
