"""The client commands of `sizzle`: login, logout, tiers, models, up, start, ps, stop, balance.

They speak to a Sizzle server over its public API with an API key. Human output is rich
tables on stdout and progress on stderr; with `--json`, stdout carries exactly one JSON
document (the API's own) and nothing else. Errors are `error: <message>` on stderr with exit
status 1 (2 for a usage mistake).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Annotated, Any

import typer
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
from rich.table import Table
from rich.text import Text

from sizzle.client.api import JSON, SizzleClient
from sizzle.client.config import (
    DEFAULT_API_URL,
    Credentials,
    delete_credentials,
    load_credentials,
    normalize_url,
    resolve,
    save_credentials,
)
from sizzle.client.errors import ApiError, ClientError
from sizzle.domain.lifecycle import SessionStatus

PANEL = "Use a Sizzle server (SIZZLE_API_URL)"
WAITING = frozenset({SessionStatus.PENDING.value, SessionStatus.PROVISIONING.value})
ENDED = frozenset({SessionStatus.TERMINATED.value, SessionStatus.FAILED.value})


@dataclass
class Runtime:
    """How `up` waits between polls: injectable, so tests drive a fake clock instead."""

    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 2.0


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON (one document) and nothing else.")
]


# --- output ------------------------------------------------------------------------------


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _say(console: Console, text: str) -> None:
    """A line of plain text (never read as rich markup), unwrapped."""
    console.print(Text(text), soft_wrap=True)


@contextmanager
def _reported() -> Iterator[None]:
    """A ClientError becomes `error: <message>` (and its hint) on stderr, and exit status 1."""
    try:
        yield
    except ClientError as exc:
        typer.secho("error: ", fg="red", err=True, nl=False)
        typer.echo(exc.message, err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        raise typer.Exit(1) from None


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


def _cells(*values: object) -> list[Text]:
    return [Text("" if v is None else str(v)) for v in values]


def _gpu(session: JSON) -> str:
    if not session.get("gpu_type"):
        return "-"
    return f"{session.get('gpu_count') or 1}× {session['gpu_type']}"


def _when(stamp: str | None) -> str:
    """An API timestamp to the minute: 2026-03-01T12:00:00Z -> 2026-03-01 12:00."""
    return stamp[:16].replace("T", " ") if stamp else "-"


def _progress_text(session: JSON) -> str:
    progress = session.get("progress") or {}
    text = str(session["status"])
    if progress.get("phase") and text in WAITING:  # the last phase lingers on after ready
        text += f": {progress['phase']}"
        if progress.get("percent") is not None:
            text += f" {progress['percent']}%"
    return text


# --- the client for a command -------------------------------------------------------------


def _client(*, signed_in: bool = True) -> SizzleClient:
    target = resolve()
    if signed_in and not target.key:
        raise ClientError(target.missing_key_hint)
    return SizzleClient(target.api_url, target.key if signed_in else None)


def _login_url() -> str:
    if os.environ.get("SIZZLE_API_URL"):
        return normalize_url(os.environ["SIZZLE_API_URL"], source="SIZZLE_API_URL")
    try:
        stored = load_credentials()
    except ClientError:
        stored = None
    return normalize_url(stored.api_url, source="api_url") if stored else DEFAULT_API_URL


# --- waiting for a GPU ----------------------------------------------------------------------


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
            task = bar.add_task(_progress_text(session), total=None) if bar else None
            shown = ""
            while True:
                self.last = session
                text = _progress_text(session)
                if text != shown:
                    _say(self.console, f"  {text}")
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


# --- commands -------------------------------------------------------------------------------


def register(app: typer.Typer, runtime: Runtime | None = None) -> None:
    """Add the client commands to `app` (the `sizzle` command, or a test's own app)."""
    runtime = runtime or Runtime()

    @app.command(rich_help_panel=PANEL)
    def login(
        email: Annotated[str | None, typer.Option(help="Asked for if left out.")] = None,
        password_stdin: Annotated[
            bool, typer.Option("--password-stdin", help="Read the password from stdin.")
        ] = False,
        key: Annotated[
            str | None,
            typer.Option(help="Use this API key (sz_live_...) instead of email and password."),
        ] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Sign in and keep an API key for the other commands (in your config dir, mode 0600)."""
        if key is not None and (email is not None or password_stdin):
            raise typer.BadParameter(
                "give either --key or an email and password", param_hint="--key"
            )
        if password_stdin and email is None:
            raise typer.BadParameter("needs --email too", param_hint="--password-stdin")
        with _reported():
            api_url = _login_url()
            made: JSON | None = None
            if key is None:
                email = email or typer.prompt("Email", err=True)  # stdout: --json only
                if password_stdin:
                    password = sys.stdin.readline().rstrip("\r\n")
                    if not password:
                        raise typer.BadParameter(
                            "stdin held no password", param_hint="--password-stdin"
                        )
                else:
                    password = typer.prompt("Password", hide_input=True, err=True)
                with SizzleClient(api_url) as anonymous:
                    try:
                        token = anonymous.sign_in(email, password)
                    except ApiError as exc:
                        exc.hint = None
                        raise
                    made = anonymous.create_key(token, name=_key_name())
                key = str(made["key"])
            with SizzleClient(api_url, key) as client:
                user = client.me()
            path = save_credentials(
                Credentials(
                    api_url=api_url,
                    key=key,
                    key_id=made["id"] if made else None,
                    key_prefix=made["prefix"] if made else None,
                    email=user["email"],
                )
            )
        if as_json:
            shown = {k: v for k, v in made.items() if k != "key"} if made else None
            _print_json(
                {"api_url": api_url, "credentials_file": str(path), "user": user, "key": shown}
            )
            return
        out = _out()
        _say(out, f"Logged in to {api_url} as {user['email']}.")
        if made:
            _say(out, f"Made the API key {made['prefix']}… ({made['name']}).")
        _say(out, f"Saved it in {path} (readable by you only).")

    @app.command(rich_help_panel=PANEL)
    def logout(as_json: JsonFlag = False) -> None:
        """Forget the stored API key. It stays valid until you revoke it on the web."""
        with _reported():
            try:
                stored = load_credentials()
            except ClientError:
                stored = None
            removed = delete_credentials()
        if as_json:
            _print_json(
                {
                    "logged_out": removed,
                    "api_url": stored.api_url if stored else None,
                    "key_id": stored.key_id if stored else None,
                    "key_prefix": stored.key_prefix if stored else None,
                }
            )
            return
        err = _err()
        if not removed:
            _say(err, "Not logged in: there was no stored key.")
        else:
            which = f" {stored.key_prefix}…" if stored and stored.key_prefix else ""
            where = stored.api_url if stored else "the server"
            _say(err, f"Forgot the API key{which} for {where} on this machine.")
            _say(
                err,
                "The key itself still works until revoked: revoke it on the API keys page "
                f"({where}/account/keys).",
            )
        if os.environ.get("SIZZLE_API_KEY"):
            _say(err, "SIZZLE_API_KEY is still set in your environment.")

    @app.command(rich_help_panel=PANEL)
    def tiers(as_json: JsonFlag = False) -> None:
        """The GPU tiers, their prices, and whether each can be had now."""
        with _reported(), _client(signed_in=False) as client:
            listed = client.tiers()
            available = client.availability()
        if as_json:
            _print_json({"tiers": listed, "availability": available})
            return
        now = {a["tier"]: a for a in available}
        table = _table("TIER", "GPUS", "VRAM", "$/MIN", "$/HOUR", "AVAILABLE", "GOOD FOR")
        for tier in listed:
            gpus = tier["min_gpus"], tier["max_gpus"]
            count = str(gpus[0]) if gpus[0] == gpus[1] else f"{gpus[0]}-{gpus[1]}"
            here = now.get(tier["name"])
            table.add_row(
                *_cells(
                    tier["name"],
                    f"{count}× {' / '.join(tier['gpu_types'])}",
                    f"{tier['min_vram_gb']} GB",
                    tier["price_per_minute_usd"],
                    tier["price_per_hour_usd"],
                    ("yes" if here["available"] else "no") if here else "?",
                    tier["good_for"],
                )
            )
        _out().print(table)

    @app.command(rich_help_panel=PANEL)
    def models(
        search: Annotated[
            str | None, typer.Argument(help="Words to look for (name, family).")
        ] = None,
        category: Annotated[str | None, typer.Option(help="e.g. coding, chat.")] = None,
        limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
        offset: Annotated[int, typer.Option(min=0)] = 0,
        as_json: JsonFlag = False,
    ) -> None:
        """The model library, and the cheapest tier each model fits."""
        with _reported(), _client(signed_in=False) as client:
            page = client.models(search=search, category=category, limit=limit, offset=offset)
        if as_json:
            _print_json(page)
            return
        table = _table("MODEL", "NAME", "PARAMS", "CONTEXT", "BEST TIER", "GOOD FOR")
        for model in page["items"]:
            table.add_row(
                *_cells(
                    model["slug"],
                    model["name"],
                    f"{model['parameters_b']:g}B",
                    f"{model['context_length']:,}",
                    model["best_tier"] or ("laptop" if model["runs_on_a_laptop"] else "-"),
                    model["good_for"],
                )
            )
        out = _out()
        out.print(table)
        shown = len(page["items"])
        if shown < page["total"]:
            _say(
                _err(),
                f"{offset + 1}-{offset + shown} of {page['total']}: --offset {offset + shown} "
                "for more",
            )

    @app.command(rich_help_panel=PANEL)
    def up(
        tier: Annotated[str, typer.Option(help="starter, pro, beast or ultra (`sizzle tiers`).")],
        model: Annotated[
            str | None, typer.Option(help="A model from `sizzle models`, or an Ollama tag.")
        ] = None,
        max_minutes: Annotated[
            int | None, typer.Option(min=1, help="Stop the session after this many minutes.")
        ] = None,
        start: Annotated[
            bool, typer.Option(help="Start (and begin billing) once ready; --no-start waits only.")
        ] = True,
        as_json: JsonFlag = False,
    ) -> None:
        """Rent a GPU: wait until it is ready, showing progress, then start it."""
        err = _err()
        with _reported(), _client() as client:
            session = client.create_session(tier=tier, model=model, max_minutes=max_minutes)
            session_id = session["id"]
            for warning in session.get("warnings") or []:
                _say(err, f"warning: {warning}")
            _say(err, f"Session {session_id} on {session['tier']}: waiting for its GPU.")
            waiter = Waiter(client, runtime, err)
            try:
                session = waiter.until_ready(session)
            except KeyboardInterrupt:
                status = (waiter.last or session)["status"]
                _say(err, f"Stopped waiting. Session {session_id} is still {status}: it goes on.")
                _say(err, f"See it with `sizzle ps`; stop it with `sizzle stop {session_id}`.")
                raise typer.Exit(130) from None
            except SessionEnded as ended:
                if as_json:
                    _print_json(ended.session)
                raise
            if start:
                try:
                    session = client.act(session_id, "start")
                except ApiError as exc:
                    exc.hint = (
                        f"session {session_id} is ready but not started; "
                        f"`sizzle stop {session_id}` releases it"
                    )
                    raise
        if as_json:
            _print_json(session)
            return
        _print_session_summary(session, client.api_url)

    @app.command(rich_help_panel=PANEL)
    def start(
        session_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False
    ) -> None:
        """Start a ready session (billing begins), e.g. after `sizzle up --no-start`."""
        with _reported(), _client() as client:
            session = client.act(session_id, "start")
        if as_json:
            _print_json(session)
            return
        _print_session_summary(session, client.api_url)

    @app.command(rich_help_panel=PANEL)
    def ps(
        show_all: Annotated[bool, typer.Option("--all", "-a", help="Ended sessions too.")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """My sessions that have not ended (all of them with --all), newest first."""
        with _reported(), _client() as client:
            found = [s for s in client.all_sessions() if show_all or s["status"] not in ENDED]
        if as_json:
            _print_json(found)
            return
        if not found:
            _say(
                _err(), "No sessions." if show_all else "No live sessions (--all shows ended ones)."
            )
            return
        table = _table("ID", "STATUS", "TIER", "MODEL", "GPU", "MINUTES", "COST", "CREATED")
        for s in found:
            table.add_row(
                *_cells(
                    s["id"],
                    _progress_text(s),
                    s["tier"],
                    s["model"] or "-",
                    _gpu(s),
                    s["charged_minutes"],
                    f"${s['cost_usd']}",
                    _when(s["created_at"]),
                )
            )
        _out().print(table)

    @app.command(rich_help_panel=PANEL)
    def stop(
        session_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False
    ) -> None:
        """Stop a session: its GPU is released and billing ends."""
        with _reported(), _client() as client:
            session = client.act(session_id, "stop")
        if as_json:
            _print_json(session)
            return
        _say(
            _out(),
            f"Session {session['id']} is {session['status']}: {session['charged_minutes']} "
            f"minute(s) charged, ${session['cost_usd']} in all.",
        )

    @app.command(rich_help_panel=PANEL)
    def balance(as_json: JsonFlag = False) -> None:
        """My credit, free minutes and included minutes."""
        with _reported(), _client() as client:
            funds = client.balance()
        if as_json:
            _print_json(funds)
            return
        table = _table("", "")
        table.show_header = False
        table.add_row(*_cells("Credit", f"${funds['balance_usd']}"))
        table.add_row(*_cells("Free minutes", funds["free_minutes"]))
        table.add_row(*_cells("Included minutes", funds.get("included_minutes", 0)))
        _out().print(table)


def _key_name() -> str:
    return f"sizzle CLI on {socket.gethostname() or 'this machine'}"[:100]


def _print_session_summary(session: JSON, api_url: str) -> None:
    out = _out()
    session_id = session["id"]
    _say(
        out,
        f"Session {session_id} is {session['status']}: {_gpu(session)} ({session['tier']}), "
        f"${session['price_per_minute_usd']} a minute, billed per started minute.",
    )
    if session.get("model"):
        _say(out, f"Model: {session['model']}")
    workspace = session.get("workspace") or {}
    if workspace.get("chat_available"):
        _say(out, f"Chat: POST {api_url}/v1/chat/completions with your API key.")
    elif workspace.get("message"):
        _say(out, f"Chat: {workspace['message']}")
    if session["status"] == SessionStatus.READY.value:
        _say(out, f"Start it with `sizzle start {session_id}` (billing begins then).")
    _say(out, f"Stop it with `sizzle stop {session_id}`.")
