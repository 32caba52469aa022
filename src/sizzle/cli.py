"""The `sizzle` command: serve, worker, db upgrade, admin tasks, and the client commands
(login, tiers, up, ps, ...; see sizzle.client) that use a server through its API."""

from __future__ import annotations

import asyncio
import gc
import signal
from decimal import InvalidOperation
from typing import Annotated, Any

import typer
from prometheus_client import start_http_server
from rich.console import Console

from sizzle.client.commands import register as register_client_commands
from sizzle.db.database import Database
from sizzle.db.migrate import is_current, upgrade
from sizzle.domain.money import usd_to_micros
from sizzle.errors import SizzleError
from sizzle.logging import configure_logging
from sizzle.settings import Settings, is_loopback
from sizzle.state import AppState, clock_for

app = typer.Typer(help="Sizzle: rent a GPU by the minute.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Operator tasks.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
register_client_commands(app)
console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides SIZZLE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides SIZZLE_PORT.")] = None,
    jobs: Annotated[bool, typer.Option(help="Run the background jobs here too.")] = True,
) -> None:
    """Serve the API and run the background jobs (SQLite under ~/.sizzle by default)."""
    import uvicorn

    from sizzle.api.app import create_app

    given: dict[str, Any] = {"host": host, "port": port}
    settings = Settings(**{name: value for name, value in given.items() if value is not None})
    if not settings.public_url and not is_loopback(settings.host):
        raise _fail(
            f"sizzle serve on {settings.host} is reachable from other machines: set "
            "SIZZLE_PUBLIC_URL to the address browsers use (e.g. https://gpu.example.com), "
            "where the links in mails and Stripe's return links point, or serve on 127.0.0.1"
        )
    configure_logging()
    settings.make_home()
    _prepare_database(settings)
    state = AppState.build(settings)
    console.print(
        f"Sizzle on http://{settings.host}:{settings.port} "
        f"(providers: {', '.join(state.providers)}; database: {state.db.dialect})"
    )
    app = create_app(state=state, run_jobs=jobs)
    settle_heap()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
    )


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this worker's Prometheus metrics (jobs, breakers) on this port."),
    ] = None,
) -> None:
    """Run the background jobs only (metering, provisioning, reaper), for scale-out."""
    configure_logging()
    state = AppState.build(Settings())
    if metrics_port is not None:
        # the database's figures come from the API's /metrics; this serves what the jobs count
        # and the breakers of the orchestrator that launches (API replicas only look up offers)
        registry = state.metrics.worker_registry(state.orchestrator, clock=state.clock)
        start_http_server(metrics_port, registry=registry)

    async def _run() -> None:
        if not await is_current(state.db):
            raise _fail("the database schema is not current: run `sizzle db upgrade` first")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        settle_heap()
        state.jobs.start()
        await stop.wait()
        await state.close()

    asyncio.run(_run())


# Young objects are collected after this many allocations (Python's default, 700, collects
# several times per API request).
GC_YOUNG_THRESHOLD = 7000


def settle_heap() -> None:
    """Before a long-running process serves: what it has built so far (modules, the app, its
    routes and schemas: ~170k objects) lives until it exits, so the collector stops walking it
    (`gc.freeze`), and collects young objects less often. A full collection otherwise walked
    all of it, pausing every request in flight for up to 100 ms (p99), and collections took
    ~10% of an API request's CPU (measured in-process on GET /api/v1/sessions/{id})."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = Settings()
    asyncio.run(_upgrade_and_dispose(Database(settings.resolved_database_url)))
    console.print("database is current")


def _prepare_database(settings: Settings) -> None:
    """The default SQLite file is brought up to date (made, the first time); any other
    database must have been upgraded with `sizzle db upgrade` (once, by the operator)."""
    db = Database(settings.resolved_database_url)
    if settings.is_default_database:
        asyncio.run(_upgrade_and_dispose(db))
    elif not asyncio.run(_is_current_and_dispose(db)):
        raise _fail("the database schema is not current: run `sizzle db upgrade` first")


async def _upgrade_and_dispose(db: Database) -> None:
    try:
        await upgrade(db)
    finally:
        await db.dispose()


async def _is_current_and_dispose(db: Database) -> bool:
    try:
        return await is_current(db)
    finally:
        await db.dispose()


@admin_app.command("create-user")
def create_user(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    admin: Annotated[bool, typer.Option("--admin", help="An operator.")] = False,
    plan: Annotated[str, typer.Option(help="free, starter, pro or enterprise.")] = "free",
    name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a user (with the sign-up free minutes)."""
    from sizzle.services import accounts

    settings = Settings()
    _prepare_database(settings)

    async def _run() -> str:
        db = Database(settings.resolved_database_url)
        try:
            async with db.transaction() as tx:
                user = await accounts.create_user(
                    tx,
                    email=email,
                    password=password,
                    name=name,
                    plan=plan,
                    is_admin=admin,
                    now=clock_for(settings).now(),
                    free_minutes=settings.free_minutes,
                    actor="cli",
                )
                return user.id
        finally:
            await db.dispose()

    try:
        user_id = asyncio.run(_run())
    except SizzleError as exc:
        raise _fail(exc.message) from exc
    console.print(f"created {email} ({user_id}){' as admin' if admin else ''}, plan {plan}")


@admin_app.command("grant-credits")
def grant_credits(email: str, usd: str) -> None:
    """Add USD credit to a user's balance (a ledger entry from the platform's grants)."""
    from sizzle.services import accounts

    try:
        micros = usd_to_micros(usd)
    # ArithmeticError: decimal's Overflow ("1e999999999") and int("Infinity")'s OverflowError
    except (InvalidOperation, ValueError, ArithmeticError) as exc:
        raise _fail(f"{usd!r} is not an amount of dollars") from exc
    settings = Settings()
    _prepare_database(settings)

    async def _run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            async with db.transaction() as tx:
                user = await accounts.get_user_by_email(tx, email)
                now = clock_for(settings).now()
                await accounts.grant_credits(
                    tx, user, micros, now=now, granted_by="cli", actor="cli"
                )
        finally:
            await db.dispose()

    try:
        asyncio.run(_run())
    except SizzleError as exc:
        raise _fail(exc.message) from exc
    console.print(f"granted ${usd} to {email}")


@admin_app.command("set-plan")
def set_plan(email: str, plan: str) -> None:
    """Move a user to another plan (free, starter, pro or enterprise): which tiers they may rent
    and how many sessions at once. Recorded in the audit log."""
    from sizzle.services import accounts

    settings = Settings()
    _prepare_database(settings)

    async def _run() -> bool:
        db = Database(settings.resolved_database_url)
        try:
            async with db.transaction() as tx:
                user = await accounts.get_user_by_email(tx, email)
                return accounts.change_plan(
                    tx, user, plan, actor="cli", now=clock_for(settings).now()
                )
        finally:
            await db.dispose()

    try:
        changed = asyncio.run(_run())
    except SizzleError as exc:
        raise _fail(exc.message) from exc
    console.print(f"{email} is on the {plan} plan{'' if changed else ' already'}")


@app.command("node-agent")
def node_agent(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9400,
) -> None:
    """Report this node's GPUs (NVML) at GET /metrics, for the ollama provider's metrics."""
    import uvicorn

    from sizzle.node_agent import create_agent_app

    configure_logging()
    console.print(f"Sizzle node agent on http://{host}:{port}/metrics")
    uvicorn.run(create_agent_app(), host=host, port=port, log_config=None)
