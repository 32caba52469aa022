"""How the client commands print: rich tables and plain lines on stdout, progress and errors
on stderr, or exactly one JSON document with `--json`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sizzle.client.api import JSON
from sizzle.client.errors import ClientError
from sizzle.domain.charges import SessionCharges
from sizzle.domain.lifecycle import SessionStatus

WAITING = frozenset({SessionStatus.PENDING.value, SessionStatus.PROVISIONING.value})
ENDED = frozenset({SessionStatus.TERMINATED.value, SessionStatus.FAILED.value})
LIVE_NOW = frozenset({SessionStatus.READY.value, SessionStatus.ACTIVE.value})
SHORT_ID = 8  # `sizzle ps` shows ids this long, or as long as it takes to tell them apart


def to_stdout() -> Console:
    return Console(highlight=False)


def to_stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def say(console: Console, text: str) -> None:
    """A line of plain text (never read as rich markup), unwrapped."""
    console.print(Text(text), soft_wrap=True)


@contextmanager
def reported() -> Iterator[None]:
    """A ClientError becomes `error: <message>` (and its hint) on stderr, and exit status 1."""
    try:
        yield
    except ClientError as exc:
        typer.secho("error: ", fg="red", err=True, nl=False)
        typer.echo(exc.message, err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        raise typer.Exit(1) from None


def new_table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


def cells(*values: object) -> list[Text]:
    return [Text("" if v is None else str(v)) for v in values]


def gpu_text(session: JSON) -> str:
    if not session.get("gpu_type"):
        return "-"
    return f"{session.get('gpu_count') or 1}× {session['gpu_type']}"


def when(stamp: str | None) -> str:
    """An API timestamp to the minute: 2026-03-01T12:00:00Z -> 2026-03-01 12:00."""
    return stamp[:16].replace("T", " ") if stamp else "-"


def progress_text(session: JSON) -> str:
    progress = session.get("progress") or {}
    text = str(session["status"])
    if progress.get("phase") and text in WAITING:  # the last phase lingers on after ready
        text += f": {progress['phase']}"
        if progress.get("percent") is not None:
            text += f" {progress['percent']}%"
    return text


def print_session_summary(session: JSON, api_url: str) -> None:
    out = to_stdout()
    session_id = session["id"]
    say(
        out,
        f"Session {session_id} is {session['status']}: {gpu_text(session)} ({session['tier']}), "
        f"${session['price_per_minute_usd']} a minute, billed per started minute.",
    )
    if session.get("model"):
        name = session.get("model_name") or session["model"]
        shown = name if name == session["model"] else f"{name} ({session['model']})"
        say(out, f"Model: {shown}")
    workspace = session.get("workspace") or {}
    if workspace.get("chat_available"):
        say(out, f"Chat: POST {api_url}/v1/chat/completions with your API key.")
    elif workspace.get("message"):
        say(out, f"Chat: {workspace['message']}")
    if session.get("charged_minutes"):
        say(out, f"So far: {charges_of(session).text}.")
    if session.get("idle_minutes") and session["status"] in LIVE_NOW:
        say(
            out,
            f"Unused for {session['idle_minutes']} minutes (no request, GPU not busy), it is "
            "paused, or stopped where it cannot pause.",
        )
    say(out, f"Watch it live: {live_url(api_url, session_id)}")
    if session["status"] == SessionStatus.READY.value:
        say(out, f"Start it with `sizzle start {session_id}` (billing begins then).")
    say(out, f"Stop it with `sizzle stop {session_id}`.")


def charges_of(session: JSON) -> SessionCharges:
    """What paid the session's minutes, from the API's fields; told as the pages tell it."""
    return SessionCharges(
        free_minutes=int(session["free_minutes_used"]),
        plan_minutes=int(session["plan_minutes_used"]),
        credit_minutes=int(session["credit_minutes"]),
        credit_micros=int(session["credit_charged_micros"]),
    )


def minutes_text(session: JSON) -> str:
    """A table cell: '3' or '3 (2 free min)'."""
    charges = charges_of(session)
    return f"{charges.minutes} ({charges.note})" if charges.note else str(charges.minutes)


def short_ids(ids: list[str]) -> dict[str, str]:
    """Each id cut to the shortest prefix of at least SHORT_ID characters that no other id in
    the list starts with: what `ps` shows and every command takes back."""
    shown = {}
    for one in ids:
        length = SHORT_ID
        while length < len(one) and any(o != one and o.startswith(one[:length]) for o in ids):
            length += 1
        shown[one] = one[:length]
    return shown


def live_url(api_url: str, session_id: str) -> str:
    """The session's live page on the web."""
    return f"{api_url}/sessions/{session_id}"


def ordinal(number: int | None) -> str:
    """1st, 2nd, 3rd, 11th, 22nd."""
    if number is None:
        return "-"
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def waited_text(seconds: int) -> str:
    """2 h 05 min, 4 min, 12 s."""
    hours, rest = divmod(int(seconds), 3600)
    if hours:
        return f"{hours} h {rest // 60:02d} min"
    return f"{rest // 60} min" if rest >= 60 else f"{rest} s"
