"""The client commands of `sizzle`: login, logout, tiers, models, up, queue, start, ps, stop,
ssh, balance.

They speak to a Sizzle server over its public API with an API key. Human output is rich
tables on stdout and progress on stderr; with `--json`, stdout carries exactly one JSON
document (the API's own) and nothing else. Errors are `error: <message>` on stderr with exit
status 1 (2 for a usage mistake).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Annotated, Literal

import typer

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
from sizzle.client.output import (
    ENDED,
    cells,
    charges_of,
    gpu_text,
    live_url,
    minutes_text,
    new_table,
    ordinal,
    print_json,
    print_session_summary,
    progress_text,
    reported,
    say,
    short_ids,
    to_stderr,
    to_stdout,
    waited_text,
    when,
)
from sizzle.client.waiter import Runtime, SessionEnded, Waiter

PANEL = "Use a Sizzle server (SIZZLE_API_URL)"


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON (one document) and nothing else.")
]


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


def _queued_id(client: SizzleClient, given: str) -> str:
    """The id of my one queued launch whose id is `given` or starts with it."""
    given = given.strip().lower()
    if not given:
        raise ClientError("give a queued launch's id, or the first few characters of one")
    matches = [q["id"] for q in client.queued_launches() if str(q["id"]).startswith(given)]
    if len(matches) != 1:
        raise ClientError(
            f"{'no' if not matches else len(matches)} queued launch"
            f"{'es have' if len(matches) > 1 else ' of yours has'} an id starting with {given!r}",
            hint="`sizzle queue --all` lists them",
        )
    return str(matches[0])


def _say_queued(queued: JSON) -> None:
    err = to_stderr()
    say(err, f"No {queued['tier']} GPU is free right now, so Sizzle will wait for one.")
    say(
        err,
        f"Queued launch {queued['id']}: {ordinal(queued['position'])} in line; it waits until "
        f"{when(queued['expires_at'])} UTC. Nothing is charged while it waits.",
    )
    say(err, "You get a mail when its GPU is ready; start it then with `sizzle start ID`.")
    say(
        err,
        f"See it with `sizzle queue`; stop waiting with `sizzle queue --cancel {queued['id']}`.",
    )


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
        with reported():
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
                        signed_in = anonymous.sign_in(email, password)
                    except ApiError as exc:
                        exc.hint = None
                        raise
                    if signed_in.terms_must_accept:
                        _ask_to_accept_terms(anonymous, signed_in.token, can_ask=not password_stdin)
                    made = anonymous.create_key(signed_in.token, name=_key_name())
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
            print_json(
                {"api_url": api_url, "credentials_file": str(path), "user": user, "key": shown}
            )
            return
        out = to_stdout()
        say(out, f"Logged in to {api_url} as {user['email']}.")
        if made:
            say(out, f"Made the API key {made['prefix']}… ({made['name']}).")
        say(out, f"Saved it in {path} (readable by you only).")

    @app.command(rich_help_panel=PANEL)
    def logout(as_json: JsonFlag = False) -> None:
        """Forget the stored API key. It stays valid until you revoke it on the web."""
        with reported():
            try:
                stored = load_credentials()
            except ClientError:
                stored = None
            removed = delete_credentials()
        if as_json:
            print_json(
                {
                    "logged_out": removed,
                    "api_url": stored.api_url if stored else None,
                    "key_id": stored.key_id if stored else None,
                    "key_prefix": stored.key_prefix if stored else None,
                }
            )
            return
        err = to_stderr()
        if not removed:
            say(err, "Not logged in: there was no stored key.")
        else:
            which = f" {stored.key_prefix}…" if stored and stored.key_prefix else ""
            where = stored.api_url if stored else "the server"
            say(err, f"Forgot the API key{which} for {where} on this machine.")
            say(
                err,
                "The key itself still works until revoked: revoke it on the API keys page "
                f"({where}/account/keys).",
            )
        if os.environ.get("SIZZLE_API_KEY"):
            say(err, "SIZZLE_API_KEY is still set in your environment.")

    @app.command(rich_help_panel=PANEL)
    def tiers(as_json: JsonFlag = False) -> None:
        """The GPU tiers, their prices, and whether each can be had now."""
        with reported(), _client(signed_in=False) as client:
            listed = client.tiers()
            available = client.availability()
        if as_json:
            print_json({"tiers": listed, "availability": available})
            return
        now = {a["tier"]: a for a in available}
        table = new_table("TIER", "GPUS", "VRAM", "$/MIN", "$/HOUR", "AVAILABLE", "GOOD FOR")
        for tier in listed:
            gpus = tier["min_gpus"], tier["max_gpus"]
            count = str(gpus[0]) if gpus[0] == gpus[1] else f"{gpus[0]}-{gpus[1]}"
            here = now.get(tier["name"])
            table.add_row(
                *cells(
                    tier["name"],
                    f"{count}× {' / '.join(tier['gpu_types'])}",
                    f"{tier['min_vram_gb']} GB",
                    tier["price_per_minute_usd"],
                    tier["price_per_hour_usd"],
                    ("yes" if here["available"] else "no") if here else "?",
                    tier["good_for"],
                )
            )
        to_stdout().print(table)

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
        with reported(), _client(signed_in=False) as client:
            page = client.models(search=search, category=category, limit=limit, offset=offset)
        if as_json:
            print_json(page)
            return
        table = new_table("MODEL", "NAME", "PARAMS", "CONTEXT", "BEST TIER", "GOOD FOR")
        for model in page["items"]:
            table.add_row(
                *cells(
                    model["slug"],
                    model["name"],
                    f"{model['parameters_b']:g}B",
                    f"{model['context_length']:,}",
                    model["best_tier"] or ("laptop" if model["runs_on_a_laptop"] else "-"),
                    model["good_for"],
                )
            )
        out = to_stdout()
        out.print(table)
        shown = len(page["items"])
        if shown < page["total"]:
            say(
                to_stderr(),
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
        spend_cap: Annotated[
            str | None,
            typer.Option(
                help="A spending cap in dollars, e.g. 2.50: the session stops after the "
                "minutes this pays for at its tier's price."
            ),
        ] = None,
        idle_minutes: Annotated[
            str | None,
            typer.Option(
                metavar="MINUTES|never",
                help="Pause it (stop it where it cannot pause) after this long without use: "
                "5, 15, 30 or 60, or never. Default: the server's (15).",
            ),
        ] = None,
        start: Annotated[
            bool, typer.Option(help="Start (and begin billing) once ready; --no-start waits only.")
        ] = True,
        wait_for_capacity: Annotated[
            bool,
            typer.Option(
                "--wait-for-capacity",
                help="If no GPU of the tier is free, queue the launch instead of failing: "
                "Sizzle launches it when one is free and mails you when it is ready "
                "(`sizzle queue` shows it).",
            ),
        ] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Rent a GPU: wait until it is ready, showing progress, then start it."""
        err = to_stderr()
        idle = _idle_option(idle_minutes)
        with reported(), _client() as client:
            try:
                session = client.create_session(
                    tier=tier,
                    model=model,
                    max_minutes=max_minutes,
                    spend_cap=spend_cap,
                    idle_minutes=idle,
                )
            except ApiError as exc:
                if not (wait_for_capacity and exc.code == "no_capacity"):
                    if exc.code == "no_capacity":
                        exc.hint = "`--wait-for-capacity` queues it to launch when a GPU is free"
                    raise
                queued = client.queue_launch(
                    tier=tier, model=model, max_minutes=max_minutes, spend_cap=spend_cap
                )
                if as_json:
                    print_json(queued)
                    return
                _say_queued(queued)
                return
            session_id = session["id"]
            for warning in session.get("warnings") or []:
                say(err, f"warning: {warning}")
            say(err, f"Session {session_id} on {session['tier']}: waiting for its GPU.")
            say(err, f"Watch it live: {live_url(client.api_url, session_id)}")
            waiter = Waiter(client, runtime, err)
            try:
                session = waiter.until_ready(session)
            except KeyboardInterrupt:
                status = (waiter.last or session)["status"]
                say(err, f"Stopped waiting. Session {session_id} is still {status}: it goes on.")
                say(err, f"See it with `sizzle ps`; stop it with `sizzle stop {session_id}`.")
                raise typer.Exit(130) from None
            except SessionEnded as ended:
                if as_json:
                    print_json(ended.session)
                raise
            if start:
                try:
                    session = client.act(client.session_id(session_id), "start")
                except ApiError as exc:
                    exc.hint = (
                        f"session {session_id} is ready but not started; "
                        f"`sizzle stop {session_id}` releases it"
                    )
                    raise
        if as_json:
            print_json(session)
            return
        print_session_summary(session, client.api_url)

    @app.command(rich_help_panel=PANEL)
    def queue(
        show_all: Annotated[
            bool, typer.Option("--all", "-a", help="Ended and launched ones too.")
        ] = False,
        cancel: Annotated[
            str | None,
            typer.Option(metavar="ID", help="Stop waiting: the id, or its first few characters."),
        ] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """My launches waiting for a GPU (`sizzle up --wait-for-capacity`), with their place in
        line; --cancel ID stops one waiting."""
        with reported(), _client() as client:
            if cancel is not None:
                queue_id = _queued_id(client, cancel)
                client.cancel_queued(queue_id)
                found = [q for q in client.queued_launches() if q["id"] == queue_id]
            else:
                found = client.queued_launches(status=None if show_all else "waiting")
        if as_json:
            print_json(found[0] if cancel is not None and found else found)
            return
        if cancel is not None:
            ended = found[0] if found else {"id": cancel, "status": "cancelled"}
            say(to_stdout(), f"Queued launch {ended['id']} is {ended['status']}.")
            return
        if not found:
            say(
                to_stderr(),
                "Nothing is waiting for a GPU." + ("" if show_all else " (--all: ended ones too)"),
            )
            return
        table = new_table("ID", "STATUS", "TIER", "MODEL", "PLACE", "WAITED", "UNTIL", "NOTE")
        table.columns[0].no_wrap = True
        ids = short_ids([q["id"] for q in found])
        for q in found:
            table.add_row(
                *cells(
                    ids[q["id"]],
                    q["status"],
                    q["tier"],
                    q.get("model_name") or q["model"] or "-",
                    q["position"] if q["position"] is not None else "-",
                    waited_text(q["waited_seconds"]),
                    when(q["expires_at"]) if q["status"] == "waiting" else "-",
                    q["reason"] or (f"session {q['session_id']}" if q["session_id"] else ""),
                )
            )
        to_stdout().print(table)

    @app.command(rich_help_panel=PANEL)
    def start(
        session_id: Annotated[
            str, typer.Argument(metavar="ID", help="The id, or its first few characters.")
        ],
        as_json: JsonFlag = False,
    ) -> None:
        """Start a ready session (billing begins), e.g. after `sizzle up --no-start`."""
        with reported(), _client() as client:
            session = client.act(client.session_id(session_id), "start")
        if as_json:
            print_json(session)
            return
        print_session_summary(session, client.api_url)

    @app.command(rich_help_panel=PANEL)
    def ps(
        show_all: Annotated[bool, typer.Option("--all", "-a", help="Ended sessions too.")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """My sessions that have not ended (all of them with --all), newest first."""
        with reported(), _client() as client:
            found = [s for s in client.all_sessions() if show_all or s["status"] not in ENDED]
        if as_json:
            print_json(found)
            return
        if not found:
            say(
                to_stderr(),
                "No sessions." if show_all else "No live sessions (--all shows ended ones).",
            )
            return
        table = new_table("ID", "STATUS", "TIER", "MODEL", "GPU", "MINUTES", "CHARGED", "CREATED")
        table.columns[0].no_wrap = True  # an id cut in two can be neither read nor pasted
        ids = short_ids([s["id"] for s in found])
        for s in found:
            table.add_row(
                *cells(
                    ids[s["id"]],
                    progress_text(s),
                    s["tier"],
                    s.get("model_name") or s["model"] or "-",
                    gpu_text(s),
                    minutes_text(s),
                    charges_of(s).charged,
                    when(s["created_at"]),
                )
            )
        to_stdout().print(table)

    @app.command(rich_help_panel=PANEL)
    def stop(
        session_id: Annotated[
            str, typer.Argument(metavar="ID", help="The id, or its first few characters.")
        ],
        as_json: JsonFlag = False,
    ) -> None:
        """Stop a session: its GPU is released and billing ends."""
        with reported(), _client() as client:
            session = client.act(client.session_id(session_id), "stop")
        if as_json:
            print_json(session)
            return
        say(
            to_stdout(),
            f"Session {session['id']} is {session['status']}: {charges_of(session).text}.",
        )

    @app.command(rich_help_panel=PANEL)
    def ssh(
        session_id: Annotated[
            str, typer.Argument(metavar="ID", help="The id, or its first few characters.")
        ],
        as_json: JsonFlag = False,
    ) -> None:
        """The command that logs in to an active session's machine with your own SSH key
        (added on the account page). Only the command goes to stdout: $(sizzle ssh ID) runs it."""
        with reported(), _client() as client:
            access = client.session_ssh(client.session_id(session_id))
        if as_json:
            print_json(access)
            return
        say(to_stdout(), access["command"])
        err = to_stderr()
        names = ", ".join(k["name"] or k["fingerprint"] for k in access["keys"])
        say(err, f"With your key {names}; add -i <private key file> if it is not your default.")
        say(err, f"VS Code (Remote - SSH): {access['vscode_uri']}")

    @app.command(rich_help_panel=PANEL)
    def balance(as_json: JsonFlag = False) -> None:
        """My credit, free minutes and included minutes."""
        with reported(), _client() as client:
            funds = client.balance()
        if as_json:
            print_json(funds)
            return
        table = new_table("", "")
        table.show_header = False
        table.add_row(*cells("Credit", f"${funds['balance_usd']}"))
        table.add_row(*cells("Free minutes", funds["free_minutes"]))
        table.add_row(*cells("Included minutes", funds.get("included_minutes", 0)))
        to_stdout().print(table)


def _ask_to_accept_terms(client: SizzleClient, token: str, *, can_ask: bool) -> None:
    """The legal documents changed since the user accepted them: show them, and accept them
    if the user says so here (keys keep working either way)."""
    err = to_stderr()
    terms = client.terms(token)
    say(err, "Sizzle's terms changed since you accepted them. Please read them:")
    for document in terms["documents"]:
        say(err, f"  {document['title']}: {document['url']}")
    if can_ask and typer.confirm("Do you accept them?", default=False, err=True):
        client.accept_terms(token, terms["current_version"])
        say(err, "Accepted. Thank you.")
    else:
        say(err, "Not accepted yet: you will be asked again when you sign in (here or on the web).")


def _idle_option(text: str | None) -> int | Literal["never", "default"]:
    """--idle-minutes as the API takes it: minutes, never, or (not given) the server's own.
    Which numbers are allowed is the server's to say (its 422 names them)."""
    if text is None:
        return "default"
    raw = text.strip().lower()
    if raw in ("never", "none", "off"):
        return "never"
    if raw.isdecimal() and len(raw) <= 5:
        return int(raw)
    raise typer.BadParameter(
        f"{text!r} is not a number of minutes; give 5, 15, 30 or 60, or never",
        param_hint="--idle-minutes",
    )


def _key_name() -> str:
    return f"sizzle CLI on {socket.gethostname() or 'this machine'}"[:100]
