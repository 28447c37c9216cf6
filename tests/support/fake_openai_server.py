"""A fault-injecting OpenAI-compatible chat server on 127.0.0.1, for tests.

Each response is decided by `policy(request_number, body) -> action`, and the text of
a successful answer by `answer(body)`, so a test scripts exactly the faults and
answers it needs and reads back what the client really sent. `FAULTS` lists the
faults a real endpoint shows; `FaultServer.__doc__` every action. The legacy completions
route answers `echo` + `logprobs` requests with prompt logprobs from `prompt_logprobs(prompt, n)`
(a deterministic stand-in by default; a test can plug in a real model).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_S = 2.0
GATHER_TIMEOUT_S = 10.0
Policy = Callable[[int, dict], str]
# What goes wrong with real endpoints: rate limiting with Retry-After, a server error, no answer
# in time, an empty body, a body that is not JSON, the body cut off mid-transfer, the connection
# dropped without a response, and an answer cut off at max_tokens.
FAULTS = ("429", "500", "hang", "empty", "garbage", "truncated_body", "drop", "length")

# (token text, character offset, logprob or None for the first token, top alternatives)
PromptLogprobs = Callable[[str, int], list[tuple[str, int, float | None, dict[str, float]]]]


def word_logprobs(prompt: str, n: int) -> list[tuple[str, int, float | None, dict[str, float]]]:
    """Deterministic prompt logprobs: words and spaces are tokens, longer ones less likely."""
    out = []
    for i, m in enumerate(re.finditer(r"\s+|[^\s]+", prompt)):
        lp = None if i == 0 else -0.1 * len(m.group())
        top = {} if lp is None else {m.group(): lp, **{f"alt{j}": lp - 1 - j for j in range(n - 1)}}
        out.append((m.group(), m.start(), lp, top))
    return out


def text_completion(body: dict, prompt_logprobs: PromptLogprobs, with_logprobs: bool) -> dict:
    """A legacy completion that echoes the prompt (when asked) and generates one token "!"."""
    prompt = body["prompt"]
    choice: dict = {"index": 0, "finish_reason": "length", "text": (prompt if body.get("echo") else "") + "!"}
    if with_logprobs and body.get("logprobs") is not None:
        tokens = prompt_logprobs(prompt, int(body["logprobs"])) if body.get("echo") else []
        tokens.append(("!", len(prompt), -0.5, {"!": -0.5}))
        choice["logprobs"] = {"tokens": [t[0] for t in tokens], "token_logprobs": [t[2] for t in tokens],
                              "text_offset": [t[1] for t in tokens], "top_logprobs": [t[3] or None for t in tokens]}
    else:
        choice["logprobs"] = None
    return {"id": "cmpl-2", "object": "text_completion", "created": 0, "model": body["model"], "choices": [choice],
            "usage": {"prompt_tokens": len(word_logprobs(prompt, 1)), "completion_tokens": 1,
                      "total_tokens": len(word_logprobs(prompt, 1)) + 1}}


def reply_text(body: dict) -> str:
    """The server's deterministic answer: tells tests which prompt it answered."""
    return "echo " + body["messages"][-1]["content"]


def chat_completion(body: dict, with_logprobs: bool, text: str, finish_reason: str = "stop") -> dict:
    choice: dict = {"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": text}}
    if with_logprobs and body.get("logprobs"):
        n = body.get("top_logprobs") or 1
        choice["logprobs"] = {
            "content": [
                {
                    "token": tok,
                    "logprob": -0.1,
                    "bytes": None,
                    "top_logprobs": [{"token": tok, "logprob": -0.1, "bytes": None}]
                    + [{"token": f"alt{j}", "logprob": -3.0 - j, "bytes": None} for j in range(n - 1)],
                }
                for tok in text.split()
            ]
        }
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


class FaultServer:
    """Actions: ok, ok_nologprobs, reject_logprobs, slow_ok, gather (answer once `gather_n` requests
    are in flight together), 401_echo (echoes the key back), and the FAULTS: 429 (Retry-After:
    `retry_after`), 500, hang (answers after `hang_s`), empty (200, no body), garbage (200, not JSON),
    truncated_body (200, half the body, then the connection closes), drop (the connection closes
    with no response), length (the answer cut in half, finish_reason 'length')."""

    def __init__(self) -> None:
        self.policy: Policy = lambda n, body: "ok"
        self.answer: Callable[[dict], str] = reply_text
        self.prompt_logprobs: PromptLogprobs = word_logprobs
        self.bodies: list[dict] = []
        self.auth_headers: list[str] = []
        self.actions: list[str] = []  # what each request got, in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self.gather_n = 2
        self.models_status = 200  # what GET /models answers: 401 plays a server that refuses the key
        self.retry_after = "0.3"
        self.hang_s = HANG_S
        self._lock = threading.Lock()
        self._gathered = threading.Condition(self._lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                if server.models_status != 200:
                    self._send(server.models_status, {"error": {"message": "refused"}})
                else:
                    self._send(200, {"object": "list", "data": []})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    n = len(server.bodies)
                    server.bodies.append(body)
                    server.auth_headers.append(self.headers.get("Authorization", ""))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server._gathered.notify_all()
                try:
                    action = server.policy(n, body)
                    with server._lock:
                        server.actions.append(action)
                    if self.path.endswith("/completions") and not self.path.endswith("/chat/completions"):
                        self._act_text(action, body)
                    else:
                        self._act(action, body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _act(self, action: str, body: dict) -> None:
                if action == "gather":  # proves concurrency without timing: wait for company
                    with server._gathered:
                        server._gathered.wait_for(lambda: server.in_flight >= server.gather_n, GATHER_TIMEOUT_S)
                    action = "ok"
                if action == "ok":
                    self._send(200, chat_completion(body, True, server.answer(body)))
                elif action == "slow_ok":
                    time.sleep(0.1)
                    self._send(200, chat_completion(body, True, server.answer(body)))
                elif action == "ok_nologprobs":
                    self._send(200, chat_completion(body, False, server.answer(body)))
                elif action == "reject_logprobs":
                    if body.get("logprobs"):
                        self._send(400, {"error": {"message": "logprobs are not supported by this model"}})
                    else:
                        self._send(200, chat_completion(body, False, server.answer(body)))
                elif action == "429":
                    self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": server.retry_after})
                elif action == "500":
                    self._send(500, {"error": {"message": "boom"}})
                elif action == "401_echo":  # a hostile server that echoes the key back
                    self._send(401, {"error": {"message": f"bad key {self.headers.get('Authorization')}"}})
                elif action == "hang":
                    time.sleep(server.hang_s)
                    self._send(200, chat_completion(body, False, server.answer(body)))
                elif action == "garbage":
                    self._send_raw(200, b"<html>not json{", "application/json")
                elif action == "empty":
                    self._send_raw(200, b"", "application/json")
                elif action == "truncated_body":
                    data = json.dumps(chat_completion(body, False, server.answer(body))).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                elif action == "drop":
                    self.close_connection = True  # no status line, no headers: the socket just closes
                elif action == "length":
                    text = server.answer(body)
                    self._send(200, chat_completion(body, False, text[: max(1, len(text) // 2)], "length"))
                else:
                    raise AssertionError(f"unknown action {action}")

            def _act_text(self, action: str, body: dict) -> None:
                if action == "ok":
                    self._send(200, text_completion(body, server.prompt_logprobs, True))
                elif action == "ok_nologprobs":
                    self._send(200, text_completion(body, server.prompt_logprobs, False))
                elif action == "reject_logprobs":
                    self._send(400, {"error": {"message": "echo with logprobs is not supported"}})
                elif action == "no_route":
                    self._send(404, {"detail": "Not Found"})
                else:
                    self._act(action, body)

            def _send(self, status: int, obj: dict, headers: dict[str, str] | None = None) -> None:
                self._send_raw(status, json.dumps(obj).encode(), "application/json", headers)

            def _send_raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def n_requests(self) -> int:
        return len(self.bodies)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
