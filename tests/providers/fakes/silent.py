"""A loopback server that accepts every connection and never answers: a hung node."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class SilentServer:
    url: str
    accepted: list[socket.socket] = field(default_factory=list)


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    """Listen on 127.0.0.1 until the block ends, holding every connection open, unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)
    server = SilentServer(url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            server.accepted.append(connection)  # kept open: the client waits for an answer

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        done.set()
        thread.join(timeout=5)
        for connection in server.accepted:
            connection.close()
        listener.close()
