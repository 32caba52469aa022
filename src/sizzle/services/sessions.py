"""Session use cases: create, start, pause, resume, stop, and what a client sees of one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.leases import lease, session_lease
from sizzle.db.models import GpuSession, ProviderInstance, User
from sizzle.domain.charges import SessionCharges
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.limits import LimitError, check_limits
from sizzle.domain.tiers import PLANS, TIERS, Tier
from sizzle.errors import (
    Conflict,
    Forbidden,
    InsufficientCredit,
    InvalidTransition,
    NoCapacity,
    NotFound,
    SizzleError,
    ValidationFailed,
)
from sizzle.providers.base import Provider, SupportsPause
from sizzle.services import audit, budget, idempotency, ledger
from sizzle.services.lifecycle import active_ms, switch_status
from sizzle.services.metering import lock_billing
from sizzle.services.orchestrator import Orchestrator

log = structlog.get_logger(__name__)

S = SessionStatus
LIVE_STATUSES = [status.value for status in SessionStatus if status.is_live()]
# How long a user's action waits for another step on the session (another user's action on
# another replica, a release, a launch check) that holds its lease. A pause or resume still
# waiting then answers 409; a stop answers "stopping" and leaves the release to the reaper.
LEASE_WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class SessionView:
    session: GpuSession
    active_ms: int

    @property
    def cost_micros(self) -> int:
        return self.session.charged_minutes * self.session.price_micros_per_minute


def view(session: GpuSession, now: datetime) -> SessionView:
    return SessionView(session=session, active_ms=active_ms(session, now))


def find_tier(name: str) -> Tier:
    tier = TIERS.get(name)
    if tier is None:
        raise ValidationFailed(
            f"unknown tier {name!r}; tiers: {', '.join(TIERS)}", code="unknown_tier"
        )
    return tier


@dataclass(frozen=True)
class Launch:
    """A session made by a request, or (`replayed`) the one an earlier request with the same
    idempotency key made."""

    session: GpuSession
    replayed: bool = False


async def create_session(
    db: Database,
    orchestrator: Orchestrator,
    *,
    user_id: str,
    tier_name: str,
    model: str | None,
    max_minutes: int | None,
    now: datetime,
    lab_tiers: Collection[str] = (),
    spend_cap_micros: int | None = None,
    idle_minutes: int | None = None,
) -> GpuSession:
    """A pending session, once the plan, the balance and live capacity all allow it."""
    launched = await launch_session(
        db,
        orchestrator,
        user_id=user_id,
        tier_name=tier_name,
        model=model,
        max_minutes=max_minutes,
        spend_cap_micros=spend_cap_micros,
        idle_minutes=idle_minutes,
        now=now,
        lab_tiers=lab_tiers,
    )
    return launched.session


async def launch_session(
    db: Database,
    orchestrator: Orchestrator,
    *,
    user_id: str,
    tier_name: str,
    model: str | None,
    max_minutes: int | None,
    now: datetime,
    spend_cap_micros: int | None = None,
    idle_minutes: int | None = None,
    idempotency_key: str | None = None,
    lab_tiers: Collection[str] = (),
) -> Launch:
    """A pending session, once the plan, the balance and live capacity all allow it.

    Its time limit is the tighter of `max_minutes` and the minutes `spend_cap_micros` pays for
    at the tier's price. It is paused or stopped after `idle_minutes` without use (None:
    never; the caller has checked it against the choices and applied the default).
    With an `idempotency_key` the user sent before for the same request (within a day), the
    session that request made, made no second time.
    On a tier in `lab_tiers`, Sizzle Lab's included minutes pay for it (after free minutes)."""
    tier = find_tier(tier_name)
    time_limit = session_time_limit(tier, max_minutes, spend_cap_micros)
    asked = idempotency.fingerprint(
        tier=tier.name,
        model=model,
        max_minutes=max_minutes,
        spend_cap_micros=spend_cap_micros,
        idle_minutes=idle_minutes,
    )
    offers = await orchestrator.offers_for(tier)  # provider calls stay outside transactions
    async with db.transaction() as tx:
        # Locked (FOR NO KEY UPDATE: ledger inserts still pass) so that two requests of one
        # user on two replicas cannot both count the same running sessions and pass the limit,
        # nor both make a session for one idempotency key.
        user = await tx.get(User, user_id, with_for_update={"key_share": True})
        if user is None:
            raise NotFound("user not found")
        if idempotency_key is not None:
            earlier = await idempotency.earlier_session(
                tx, user_id=user.id, key=idempotency_key, fingerprint=asked, now=now
            )
            if earlier is not None:
                log.info("session.create_replayed", session_id=earlier.id, user_id=user.id)
                return Launch(earlier, replayed=True)
        covered = await require_launch_allowed(tx, user, tier, lab_tiers=lab_tiers, now=now)
        if not offers:
            # `queue`: where the same request waits for a GPU instead (api/routers/launch_queue)
            raise NoCapacity(
                f"no {tier.name} GPU is free right now; try another tier or later",
                details={"queue": "/api/v1/launch-queue"},
            )
        session = add_session(
            tx,
            user_id=user.id,
            tier=tier,
            model=model,
            max_minutes=time_limit,
            idle_minutes=idle_minutes,
            lab_covered=covered,
            now=now,
            actor=f"user:{user.id}",
        )
        await tx.flush()
        if idempotency_key is not None:
            idempotency.remember(
                tx,
                user_id=user.id,
                key=idempotency_key,
                fingerprint=asked,
                session_id=session.id,
                now=now,
            )
        log.info("session.created", session_id=session.id, user_id=user.id, tier=tier.name)
        return Launch(session)


def session_time_limit(
    tier: Tier, max_minutes: int | None, spend_cap_micros: int | None
) -> int | None:
    """The tighter of `max_minutes` and the minutes the spending cap pays for at the tier's
    price; 422 `invalid_limit` saying why when a limit cannot be used."""
    try:
        limits = check_limits(
            max_minutes=max_minutes,
            spend_cap_micros=spend_cap_micros,
            price_micros_per_minute=tier.price_micros_per_minute,
        )
    except LimitError as exc:
        raise ValidationFailed(
            exc.message, code="invalid_limit", details={"field": exc.field}
        ) from None
    return limits.minutes


async def require_launch_allowed(
    tx: AsyncSession, user: User, tier: Tier, *, lab_tiers: Collection[str], now: datetime
) -> bool:
    """Refuse a launch the user's plan, running sessions, money or monthly budget do not allow
    now (the user's row locked by the caller); whether Sizzle Lab's included minutes pay for
    the tier."""
    plan = PLANS[user.plan]
    if tier.name not in plan.allowed_tiers:
        raise Forbidden(
            f"the {plan.name} plan does not include the {tier.name} tier",
            code="tier_not_in_plan",
        )
    running = await tx.scalar(
        select(func.count())
        .select_from(GpuSession)
        .where(GpuSession.user_id == user.id, GpuSession.status.in_(LIVE_STATUSES))
    )
    if (running or 0) >= plan.max_concurrent_sessions:
        allowed = plan.max_concurrent_sessions
        raise Conflict(
            f"the {plan.name} plan runs {allowed} session{'' if allowed == 1 else 's'} at "
            f"a time, and {'it is' if running == 1 else 'they are'} in use; stop one first",
            code="too_many_sessions",
        )
    covered = tier.name in lab_tiers
    await _require_first_minute(
        tx, user.id, tier.price_micros_per_minute, lab_covered=covered, now=now
    )
    return covered


def add_session(
    tx: AsyncSession,
    *,
    user_id: str,
    tier: Tier,
    model: str | None,
    max_minutes: int | None,
    lab_covered: bool,
    now: datetime,
    actor: str,
    idle_minutes: int | None,
) -> GpuSession:
    """A new pending session at the tier's price (the provisioning job launches it), in the
    audit log. `idle_minutes`: its idle limit (None: never stopped for being idle)."""
    session = GpuSession(
        id=uuid.uuid4().hex,
        user_id=user_id,
        tier=tier.name,
        model=model,
        status=S.PENDING.value,
        price_micros_per_minute=tier.price_micros_per_minute,
        lab_covered=lab_covered,
        max_minutes=max_minutes,
        idle_minutes=idle_minutes,
        charged_minutes=0,
        active_ms_before=0,
        created_at=now,
    )
    tx.add(session)
    audit.record(
        tx,
        "session.pending",
        actor=actor,
        now=now,
        user_id=user_id,
        target=f"session:{session.id}",
        detail=f"{tier.name}" + (f", {model}" if model else ""),
    )
    return session


async def record_progress(db: Database, session_id: str, phase: str, percent: float | None) -> None:
    """Keep what the provider says about a launch on the session while it provisions."""
    async with db.transaction() as tx:
        await tx.execute(
            update(GpuSession)
            .where(GpuSession.id == session_id, GpuSession.status == S.PROVISIONING.value)
            .values(
                progress_phase=phase[:64],
                progress_percent=None if percent is None else max(0, min(100, int(percent))),
            )
        )


async def get_session(tx: AsyncSession, session_id: str, *, user_id: str | None) -> GpuSession:
    """One session; another user's is as unknown as a missing one."""
    session = await tx.get(GpuSession, session_id)
    if session is None or (user_id is not None and session.user_id != user_id):
        raise NotFound("session not found")
    return session


async def lock_session(tx: AsyncSession, session_id: str, *, user_id: str | None) -> GpuSession:
    """The session, row-locked for a status change (after the billing lock, in that order)."""
    await lock_billing(tx)
    session = await tx.scalar(
        select(GpuSession).where(GpuSession.id == session_id).with_for_update()
    )
    if session is None or (user_id is not None and session.user_id != user_id):
        raise NotFound("session not found")
    return session


async def list_sessions(
    tx: AsyncSession, *, user_id: str | None, limit: int, offset: int
) -> tuple[list[GpuSession], int]:
    query = select(GpuSession)
    count = select(func.count()).select_from(GpuSession)
    if user_id is not None:
        query = query.where(GpuSession.user_id == user_id)
        count = count.where(GpuSession.user_id == user_id)
    rows = await tx.scalars(
        query.order_by(GpuSession.created_at.desc(), GpuSession.id).limit(limit).offset(offset)
    )
    return list(rows), (await tx.scalar(count)) or 0


async def live_session_ids(tx: AsyncSession, *, user_id: str) -> list[str]:
    """The user's sessions that have not ended, newest first: what a plan's limit counts."""
    rows = await tx.scalars(
        select(GpuSession.id)
        .where(GpuSession.user_id == user_id, GpuSession.status.in_(LIVE_STATUSES))
        .order_by(GpuSession.created_at.desc())
    )
    return list(rows)


async def usage_totals(tx: AsyncSession, *, user_id: str) -> SessionCharges:
    """All the user's sessions together: their minutes by what paid them, and the credit."""
    minutes, free, plan, credit = (
        await tx.execute(
            select(
                func.coalesce(func.sum(GpuSession.charged_minutes), 0),
                func.coalesce(func.sum(GpuSession.free_minutes_used), 0),
                func.coalesce(func.sum(GpuSession.plan_minutes_used), 0),
                func.coalesce(func.sum(GpuSession.credit_charged_micros), 0),
            ).where(GpuSession.user_id == user_id)
        )
    ).one()
    return SessionCharges.of(
        charged_minutes=int(minutes),
        free_minutes=int(free),
        plan_minutes=int(plan),
        credit_micros=int(credit),
    )


async def start_session(db: Database, *, session_id: str, user: User, now: datetime) -> None:
    """Begin billing a ready session."""
    async with db.transaction() as tx:
        session = await lock_session(tx, session_id, user_id=user.id)
        _require_status(session, S.READY, "start")
        await _require_first_minute(
            tx,
            session.user_id,
            session.price_micros_per_minute,
            lab_covered=session.lab_covered,
            now=now,
        )
        await switch_status(tx, session, S.ACTIVE, actor=f"user:{user.id}", now=now)


async def pause_session(
    db: Database, providers: dict[str, Provider], *, session_id: str, user: User, now: datetime
) -> None:
    """Stop billing and park the GPU; paused time is never billed.

    Under the session's lease, from the status change to the provider's stop: a resume on
    another replica cannot start the GPU in between and find it stopped behind it."""
    async with _user_lease(db, session_id, user=user):
        async with db.transaction() as tx:
            session = await lock_session(tx, session_id, user_id=user.id)
            _require_status(session, S.ACTIVE, "pause")
            await switch_status(tx, session, S.PAUSED, actor=f"user:{user.id}", now=now)
        provider = _provider_of(session, providers)
        if not (isinstance(provider, SupportsPause) and session.instance_id):
            return
        try:
            await provider.stop(session.instance_id)
        except SizzleError as exc:
            # Billing has stopped, which is what the user asked for; the reconciler stops a
            # paused session's GPU that still runs.
            log.warning("session.pause_stop_failed", session_id=session_id, error=exc.message)


async def resume_session(
    db: Database, providers: dict[str, Provider], *, session_id: str, user: User, now: datetime
) -> None:
    """Start the parked GPU, then bill again; under the session's lease, like a pause."""
    async with _user_lease(db, session_id, user=user):
        async with db.transaction() as tx:
            session = await lock_session(tx, session_id, user_id=user.id)
            _require_status(session, S.PAUSED, "resume")
            await _require_first_minute(
                tx,
                session.user_id,
                session.price_micros_per_minute,
                lab_covered=session.lab_covered,
                now=now,
            )
        provider = _provider_of(session, providers)
        if isinstance(provider, SupportsPause) and session.instance_id:
            await provider.start(session.instance_id)
        async with db.transaction() as tx:
            # A job may have ended it meanwhile (the reaper, past the pause limit): its release
            # destroys the GPU just started, once this lease is given back.
            session = await lock_session(tx, session_id, user_id=user.id)
            _require_status(session, S.PAUSED, "resume")
            await switch_status(tx, session, S.ACTIVE, actor=f"user:{user.id}", now=now)


async def stop_session(
    db: Database, providers: dict[str, Provider], *, session_id: str, user: User, now: datetime
) -> None:
    """End the session: bill to now, then release the GPU."""
    async with db.transaction() as tx:
        session = await lock_session(tx, session_id, user_id=user.id)
        if S(session.status) in (S.STOPPING, S.TERMINATED, S.FAILED):
            return  # stopping twice, or stopping a session that already ended, is not an error
        await switch_status(
            tx, session, S.STOPPING, actor=f"user:{user.id}", now=now, end_reason=EndReason.USER
        )
    await release_session(db, providers, session_id=session_id, now=now, wait=True)


async def stop_sessions_of_user(
    db: Database,
    providers: dict[str, Provider],
    *,
    user_id: str,
    actor: str,
    end_reason: EndReason,
    now: datetime,
) -> list[str]:
    """End every session of a user that has not ended (an operator suspending the account):
    billed to now, GPUs released. The ids of the sessions stopped."""
    async with db.transaction() as tx:
        await lock_billing(tx)
        found = await tx.scalars(
            select(GpuSession)
            .where(
                GpuSession.user_id == user_id,
                GpuSession.status.in_(LIVE_STATUSES),
                GpuSession.status != S.STOPPING.value,
            )
            .with_for_update()
        )
        stopping = list(found)
        for session in stopping:
            await switch_status(
                tx, session, S.STOPPING, actor=actor, now=now, end_reason=end_reason
            )
    for session in stopping:
        await release_session(db, providers, session_id=session.id, now=now, wait=True)
    return [session.id for session in stopping]


async def release_session(
    db: Database,
    providers: dict[str, Provider],
    *,
    session_id: str,
    now: datetime,
    wait: bool = False,
) -> None:
    """Destroy a stopping session's instance, then mark it terminated.

    Under the session's lease, so a user's stop on one replica and the reaper or metering on a
    worker never both call the provider for it, nor race a pause or resume of it. A job (`wait`
    false) that finds the lease taken leaves the session to its holder, or to the reaper's next
    pass; a user's stop waits for the holder a while, then reads what it did."""
    wait_seconds = LEASE_WAIT_SECONDS if wait else 0
    async with lease(db, session_lease(session_id), wait_seconds=wait_seconds) as leased:
        if not leased:
            log.debug("session.release_left_to_holder", session_id=session_id)
            return
        async with db.transaction() as tx:
            session = await get_session(tx, session_id, user_id=None)
        if S(session.status) is not S.STOPPING:
            return
        provider = _provider_of(session, providers)
        if provider is not None and session.instance_id:
            await provider.terminate(session.instance_id)
            log.info(
                "session.instance_released",
                session_id=session_id,
                provider=session.provider,
                instance_id=session.instance_id,
            )
        async with db.transaction() as tx:
            session = await lock_session(tx, session_id, user_id=None)
            if S(session.status) is not S.STOPPING:
                return
            instance = await tx.scalar(
                select(ProviderInstance).where(
                    ProviderInstance.session_id == session.id,
                    ProviderInstance.terminated_at.is_(None),
                )
            )
            if instance is not None:
                instance.terminated_at = now
            await switch_status(
                tx,
                session,
                S.TERMINATED,
                actor="system:release",
                now=now,
                reason="instance released",
            )


@asynccontextmanager
async def _user_lease(db: Database, session_id: str, *, user: User) -> AsyncIterator[None]:
    """The session's lease for a user's action, waited for a while; 409 if it stays taken.

    The session is looked up first, so that nobody learns of, or waits on, another's session.
    No transaction is open while waiting (the lease rule: never wait holding a lock)."""
    async with db.read() as tx:
        await get_session(tx, session_id, user_id=user.id)
    async with lease(db, session_lease(session_id), wait_seconds=LEASE_WAIT_SECONDS) as leased:
        if not leased:
            raise Conflict(
                "another change to this session is still under way; try again in a moment",
                code="session_busy",
            )
        yield


def _provider_of(session: GpuSession, providers: dict[str, Provider]) -> Provider | None:
    return providers.get(session.provider) if session.provider else None


def _require_status(session: GpuSession, expected: SessionStatus, action: str) -> None:
    if session.status != expected.value:
        raise InvalidTransition(
            f"cannot {action} a session that is {session.status}; it must be {expected.value}"
        )


async def _require_first_minute(
    tx: AsyncSession, user_id: str, price: int, *, lab_covered: bool, now: datetime
) -> None:
    """Refuse a start the user cannot pay a minute of, or that the monthly budget does not
    allow (reached, or no room for a minute that credit would pay)."""
    funds = await ledger.balances(tx, user_id)
    affordable = funds.minutes_at(price, lab_covered=lab_covered)
    without_credit = funds.free_minutes + (funds.included_minutes if lab_covered else 0)
    await budget.require_room(
        tx, user_id, price_micros=price, needs_credit=without_credit < 1 <= affordable, now=now
    )
    if affordable < 1:
        raise InsufficientCredit(
            "no free minutes or credit left for the first minute; add credit to continue",
            code="insufficient_credit",
        )
