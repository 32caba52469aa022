"""`sizzle up` waiting for its GPU: polls the session and shows each change as it comes."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from sizzle.client.api import JSON, SizzleClient
from sizzle.client.errors import ClientError
from sizzle.client.output import WAITING, progress_text, say
from sizzle.domain.lifecycle import SessionStatus


@dataclass
class Runtime:
    """How `up` waits between polls: injectable, so tests drive a fake clock instead."""

    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 2.0


class SessionEnded(ClientError):
    def __init__(self, session: JSON) -> None:
        reason = session.get("error") or session.get("end_reason") or "no reason given"
        super().__init__(f"session {session['id']} {session['status']}: {reason}")
        self.session = session


class Waiter:
    """Polls a session until it is ready, showing each change on stderr as it comes."""

    def __init__(self, client: SizzleClient, runtime: Runtime, console: Console) -> None:
        self.client = client
        self.runtime = runtime
        self.console = console
        self.last: JSON | None = None

    def until_ready(self, session: JSON) -> JSON:
        live = self.console.is_terminal
        bar = (
            Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            if live
            else None
        )
        with bar if bar is not None else nullcontext():
            task = bar.add_task(progress_text(session), total=None) if bar else None
            shown = ""
            while True:
                self.last = session
                text = progress_text(session)
                if text != shown:
                    say(self.console, f"  {text}")
                    shown = text
                if bar is not None and task is not None:
                    self._show(bar, task, session, text)
                status = session["status"]
                if status == SessionStatus.READY.value:
                    return session
                if status not in WAITING:
                    raise SessionEnded(session)
                self.runtime.sleep(self.runtime.poll_seconds)
                session = self.client.session(session["id"])

    @staticmethod
    def _show(bar: Progress, task: TaskID, session: JSON, text: str) -> None:
        percent = (session.get("progress") or {}).get("percent")
        if percent is None:
            bar.update(task, description=escape(text), total=None)
        else:
            bar.update(task, description=escape(text), total=100, completed=percent)
