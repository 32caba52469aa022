#!/usr/bin/env python3
"""A stand-in `ollama` executable for the boot script's tests, standard library only.

`ollama serve` answers GET /api/version, GET /api/tags, POST /api/pull (NDJSON progress) and
POST /api/generate (a pulled model answers, unless the file $STUB_OLLAMA_MUTE exists: then it
fails as a model that cannot load would) on $OLLAMA_HOST, and records the OLLAMA_HOST it was
started with as JSON in $STUB_OLLAMA_RECORD. `ollama list` and `ollama pull MODEL` are clients
of that server, as the real ones are. Models whose name starts with "missing" cannot be pulled.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIGEST = "sha256:" + "cd" * 32
PULLED: dict[str, int] = {}  # the server's local models: name -> size


def host_and_port() -> tuple[str, int]:
    host, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
    return host or "127.0.0.1", int(port)


def full_name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


class Handler(BaseHTTPRequestHandler):
    def send_json(self, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        if self.path == "/api/version":
            self.send_json({"version": "0.5.1"})
        elif self.path == "/api/tags":
            models = [
                {"name": name, "model": name, "size": size, "digest": DIGEST}
                for name, size in PULLED.items()
            ]
            self.send_json({"models": models})
        else:
            self.send_json({"error": "not found"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        if self.path not in ("/api/pull", "/api/generate"):
            self.send_json({"error": "not found"}, 404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        model = full_name(str(json.loads(self.rfile.read(length) or b"{}").get("model", "")))
        if self.path == "/api/generate":
            self.generate(model)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if model.startswith("missing"):
            lines.append({"error": "pull model manifest: file does not exist"})
        else:
            total = 4_000
            lines += [
                {
                    "status": f"pulling {DIGEST[7:19]}",
                    "digest": DIGEST,
                    "total": total,
                    "completed": done,
                }
                for done in (0, total // 2, total)
            ]
            lines += [{"status": "verifying sha256 digest"}, {"status": "success"}]
            PULLED[model] = total
        for line in lines:
            self.wfile.write(json.dumps(line).encode() + b"\n")
            self.wfile.flush()

    def generate(self, model: str) -> None:
        if model not in PULLED:
            self.send_json({"error": f"model '{model}' not found"}, 404)
        elif os.path.exists(os.environ.get("STUB_OLLAMA_MUTE") or "/nonexistent"):
            self.send_json({"error": "llama runner process has terminated"}, 500)
        else:
            self.send_json({"model": model, "response": "Hi", "done": True})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write("stub-ollama: " + format % args + "\n")


def serve() -> int:
    host, port = host_and_port()
    server = ThreadingHTTPServer((host, port), Handler)
    record = os.environ.get("STUB_OLLAMA_RECORD")
    if record:
        with open(record, "w", encoding="utf-8") as file:
            json.dump({"OLLAMA_HOST": os.environ.get("OLLAMA_HOST"), "pid": os.getpid()}, file)
    server.serve_forever()
    return 0


def request(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    host, port = host_and_port()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=data, method=method)
    return urllib.request.urlopen(req, timeout=10)  # noqa: S310 - a loopback URL we build


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "serve":
        return serve()
    try:
        if command == "list":
            with request("GET", "/api/tags") as reply:
                for model in json.load(reply)["models"]:
                    print(model["name"])
            return 0
        if command == "pull" and len(argv) == 3:
            with request("POST", "/api/pull", {"model": argv[2]}) as reply:
                for raw in reply:
                    print(raw.decode().strip(), flush=True)
                    if "error" in json.loads(raw):
                        return 1
            return 0
    except (urllib.error.URLError, OSError) as error:
        print(f"Error: could not connect to ollama server: {error}", file=sys.stderr)
        return 1
    print(f"stub ollama: unknown command {argv[1:]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
