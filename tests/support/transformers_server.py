"""A real OpenAI-compatible server on 127.0.0.1: `transformers serve` on a local model.

Used by the HTTP tests and the LLM benchmark, and handy for trying the `openai` backend
offline. It answers chat completions but offers no logprobs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def transformers_serve(model_dir: str, log_path: Path, start_timeout_s: float = 120.0,
                       extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:PORT/v1`) of a running server; stop it on exit.
    extra_args go to `transformers serve` (e.g. --continuous-batching)."""
    port = free_port()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", model_dir,
             "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", *extra_args],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
            start_new_session=True,  # its own process group, so stopping it stops all of it
        )
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/health", log_path, start_timeout_s)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM the process group started with start_new_session=True; SIGKILL what lingers."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_healthy(proc: subprocess.Popen, url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise ServerStartError(f"transformers serve did not answer {url} within {timeout_s:.0f}s; see {log_path}")
