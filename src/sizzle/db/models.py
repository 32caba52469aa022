"""SQLAlchemy models: users, sessions and their events, the ledger, provider instances."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(32), default="free")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Sign-in tokens issued before this moment are refused (a password change or reset).
    tokens_valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the user deleted the account: personal data is erased, the ledger kept.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The legal documents' version the user accepted (sizzle.legal), and when.
    terms_version: Mapped[str | None] = mapped_column(String(200))
    terms_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why an operator suspended the account (domain/suspension.py), shown to the user.
    suspension_reason: Mapped[str | None] = mapped_column(String(32))
    suspension_note: Mapped[str | None] = mapped_column(String(500))
    # Every how many hours of billable time a running session is told of ("still running");
    # 0: never (services/notification_preferences.py).
    still_running_every_hours: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The most credit GPU minutes may cost in one calendar month (UTC); None: no budget.
    monthly_budget_micros: Mapped[int | None] = mapped_column(BigInteger)


class LedgerAccount(Base):
    """One balance: a user's credit (micro-dollars) or free minutes, or a platform account."""

    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(16))
    # A cache of the sum of entries, updated in the same transaction as every entry.
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerEntry(Base):
    """An immutable movement of `amount` from the debit account to the credit account."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_user_id_id", "user_id", "id"),
        # Foreign keys: deleting an account or a session checks its entries through these.
        Index("ix_ledger_entries_debit_account_id", "debit_account_id"),
        Index("ix_ledger_entries_credit_account_id", "credit_account_id"),
        Index("ix_ledger_entries_session_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    session_id: Mapped[str | None] = mapped_column(ForeignKey("gpu_sessions.id"))
    minute: Mapped[int | None] = mapped_column(Integer)
    memo: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MonthlySpend(Base):
    """What one user's GPU minutes cost in credit in one calendar month (UTC), for the monthly
    budget (services/budget.py): kept by metering and refunds in the transaction of their
    ledger entries, so the budget is checked without reading the ledger."""

    __tablename__ = "monthly_spend"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-12"
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    # The budget in force when metering refused a minute for it this month: until the budget is
    # raised above it, no credit is spent and no session starts.
    stopped_at_micros: Mapped[int | None] = mapped_column(BigInteger)


class GpuSession(Base):
    """One rental, from request to end. Billing time is kept in epoch milliseconds."""

    __tablename__ = "gpu_sessions"
    __table_args__ = (
        Index("ix_gpu_sessions_user_id_created_at", "user_id", "created_at"),
        Index("ix_gpu_sessions_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    tier: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(32))
    instance_id: Mapped[str | None] = mapped_column(String(100))
    gpu_type: Mapped[str | None] = mapped_column(String(64))
    gpu_count: Mapped[int | None] = mapped_column(Integer)
    price_micros_per_minute: Mapped[int] = mapped_column(BigInteger)
    # Whether Sizzle Lab's included minutes may pay for this session (its tier, at launch).
    lab_covered: Mapped[bool] = mapped_column(Boolean, default=False)
    upstream_micros_per_hour: Mapped[int | None] = mapped_column(BigInteger)
    max_minutes: Mapped[int | None] = mapped_column(Integer)
    charged_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # What paid the charged minutes, kept by metering (and refunds) in the same transaction as
    # their ledger entries: minutes paid with free minutes, with Sizzle Lab's included minutes,
    # and the micro-dollars paid with credit (the rest of `charged_minutes`).
    free_minutes_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    plan_minutes_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    credit_charged_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    active_ms_before: Mapped[int] = mapped_column(BigInteger, default=0)
    active_since_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    # The reconciler's view: when the provider last listed the instance as running, and how
    # many checks in a row have not found it.
    last_seen_running_ms: Mapped[int | None] = mapped_column(BigInteger)
    # What the provider last said about the launch, e.g. ("downloading", 42).
    progress_phase: Mapped[str | None] = mapped_column(String(64))
    progress_percent: Mapped[int | None] = mapped_column(Integer)
    missing_checks: Mapped[int] = mapped_column(Integer, default=0)
    # When a browser last had the session's live page open (epoch ms; the live-page watcher
    # marks it): a notification the page already shows is not mailed as well.
    page_seen_ms: Mapped[int | None] = mapped_column(BigInteger)
    # Idle auto-stop: the limit chosen (minutes; None: never) and the last use (epoch ms) of
    # the workspace API, "Keep it running" or a busy GPU; set when the session becomes active.
    idle_minutes: Mapped[int | None] = mapped_column(Integer)
    last_activity_ms: Mapped[int | None] = mapped_column(BigInteger)


class SessionEvent(Base):
    """A status change: who made it, when, and why."""

    __tablename__ = "session_events"
    # The operator's counts of what a job did (idle stops) read by actor and time.
    __table_args__ = (Index("ix_session_events_actor_created_at", "actor", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("gpu_sessions.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProviderInstance(Base):
    """What a provider created for a session (`sizzle-<session id>`); ended once terminated."""

    __tablename__ = "provider_instances"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("gpu_sessions.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    gpu_type: Mapped[str] = mapped_column(String(64))
    gpu_count: Mapped[int] = mapped_column(Integer)
    upstream_micros_per_hour: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DemoInstance(Base):
    """A simulated GPU of the demo provider, kept here so it outlives a server restart."""

    __tablename__ = "demo_instances"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    tier: Mapped[str] = mapped_column(String(32))
    gpu_type: Mapped[str] = mapped_column(String(64))
    gpu_count: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime] = mapped_column(UTCDateTime)
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LaunchAttempt(Base):
    """One offer tried while launching a session: where, at what price, and how it ended."""

    __tablename__ = "launch_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("gpu_sessions.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    offer_id: Mapped[str] = mapped_column(String(200))
    gpu_type: Mapped[str] = mapped_column(String(64))
    gpu_count: Mapped[int] = mapped_column(Integer)
    upstream_micros_per_hour: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChatRequest(Base):
    """One request through the workspace proxy (`/v1/chat/completions`) to a session's model.

    Token counts are what the model server reported (None where it reported none); times are
    measured by the proxy: from receiving the request to the first token, and to the end.
    """

    __tablename__ = "chat_requests"
    __table_args__ = (Index("ix_chat_requests_session_id_created_at", "session_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("gpu_sessions.id"))
    model: Mapped[str] = mapped_column(String(200))
    stream: Mapped[bool] = mapped_column(Boolean)
    # ok, upstream_error (the model server answered with an error), failed (it could not be
    # reached or dropped the connection), cancelled (the client went away first)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    time_to_first_token_ms: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Purchase(Base):
    """Credit bought through Stripe Checkout: open until Stripe says it is paid (or failed).

    The credit itself is ledger entries keyed `purchase:<id>` (and `purchase:<id>:bonus`), so
    it lands once however often, and in whatever order, Stripe's events arrive."""

    __tablename__ = "purchases"
    __table_args__ = (Index("ix_purchases_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    package: Mapped[str] = mapped_column(String(32))
    paid_micros: Mapped[int] = mapped_column(BigInteger)
    credit_micros: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # open, paid, failed
    source: Mapped[str] = mapped_column(String(16), default="checkout")  # or "auto_top_up"
    error: Mapped[str | None] = mapped_column(String(300))  # why a payment failed
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Refund(Base):
    """Money given back for a purchase: the credit is taken off the balance when the refund
    is made (with the package bonus in proportion), and put back if Stripe's refund fails."""

    __tablename__ = "refunds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(ForeignKey("purchases.id"), index=True)
    amount_micros: Mapped[int] = mapped_column(BigInteger)  # back to the card
    bonus_micros: Mapped[int] = mapped_column(BigInteger)  # bonus credit taken back with it
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, failed
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AutoTopUp(Base):
    """A user's auto-top-up: when a charge leaves the credit below `threshold_micros`, the
    saved card is charged for `package` once; `armed` is cleared by that attempt and set
    again only when the balance is back at or above the threshold (one charge per crossing).
    Repeated failures switch it off."""

    __tablename__ = "auto_top_ups"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    threshold_micros: Mapped[int] = mapped_column(BigInteger)
    package: Mapped[str] = mapped_column(String(32))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    card_label: Mapped[str | None] = mapped_column(String(64))
    armed: Mapped[bool] = mapped_column(Boolean)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LabSubscription(Base):
    """A user's Sizzle Lab subscription, mirrored from Stripe's subscription.

    Stripe is the truth for `status`, the period and `cancel_at_period_end`; Sizzle keeps when
    the included minutes it granted run out (`minutes_expire_at`): the metering pass expires
    what is left then, whether or not Stripe has said anything about the next month yet."""

    __tablename__ = "lab_subscriptions"
    __table_args__ = (
        Index("ix_lab_subscriptions_user_id_created_at", "user_id", "created_at"),
        Index("ix_lab_subscriptions_minutes_expire_at", "minutes_expire_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    # open (checkout started), then Stripe's: incomplete, active, past_due, unpaid, canceled...
    status: Mapped[str] = mapped_column(String(24))
    price_micros: Mapped[int] = mapped_column(BigInteger)
    included_minutes: Mapped[int] = mapped_column(Integer)
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    minutes_expire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """A user's API key: `sz_live_<prefix><secret>`, shown once, kept only as a SHA-256 hash
    and found by its prefix. Scopes say what it may do; revoked or expired, it is refused."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Who did what, from where: sign-ins, keys, session changes, account and admin actions.

    `actor` is a user id or `system:<job>`; `user_id` is the account the event concerns (for
    an admin action, the user acted on). Ledger entries are their own record and are read
    into the audit view beside these rows, not copied."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_created_at", "created_at"),
        Index("ix_audit_events_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    target: Mapped[str | None] = mapped_column(String(100))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[str | None] = mapped_column(String(500))


class InstanceKey(Base):
    """The SSH key pair Sizzle made for a session's instance, and the host key it pinned.

    The private key is sealed (AES-GCM, keyed from the secret key, bound to the session id);
    the row goes when the session ends, and with the session."""

    __tablename__ = "instance_keys"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("gpu_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    public_key: Mapped[str] = mapped_column(Text)  # OpenSSH form: "ssh-ed25519 AAAA… sizzle-<id>"
    sealed_private_key: Mapped[str] = mapped_column(Text)
    # The instance's SSH host key (OpenSSH form), recorded on first connect; later connects
    # accept only this key.
    host_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The fingerprints (space-separated) of the user's own SSH keys the current instance was
    # booted with, next to ours: what the user can log in with (see services/ssh_keys.py).
    user_keys: Mapped[str | None] = mapped_column(Text)


class ProviderListing(Base):
    """How the reconciler's last rounds went at listing one provider's instances.

    While a provider cannot be listed the reconciler is blind there: orphans are not destroyed
    and lost instances not noticed. Kept in the database so that every process (the operator
    overview, a restarted worker) sees the same streak."""

    __tablename__ = "provider_listings"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Rounds in a row whose listing failed; 0 after a listing that worked.
    failed_rounds: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)  # first failed round
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_listed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserSshKey(Base):
    """A user's own SSH public key: put on their sessions' instances next to Sizzle's key, so
    that they can log in to the machine themselves. Only the public half is ever given."""

    __tablename__ = "user_ssh_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "fingerprint", name="uq_user_ssh_keys_user_id_fingerprint"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[str] = mapped_column(Text)  # one OpenSSH line: "ssh-ed25519 AAAA… comment"
    fingerprint: Mapped[str] = mapped_column(String(100))  # "SHA256:…", as ssh-keygen -l shows
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """An `Idempotency-Key` a user sent with a request that made a session: the same key again
    (a retry, a double click, a second replica) answers that session instead of making another.

    Kept a day (services/idempotency.py); in the database, so every replica sees it."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # A hash of what was asked (tier, model, limits): the same key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(
        ForeignKey("gpu_sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FreeMinutesClaim(Base):
    """An address that has had its sign-up free minutes, as an HMAC of it (keyed from the
    secret key): free minutes go once per address, ever, and this outlives the account's
    deletion for that alone (services/free_minutes.py)."""

    __tablename__ = "free_minutes_claims"

    address_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Notification(Base):
    """Something Sizzle tells one user: in the site's inbox, and by mail unless the user turned
    its kind off (services/notifications.py). Made in the same transaction as what it tells of,
    at most once per `key`: a retried job or a second replica makes none more."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_id_created_at", "user_id", "created_at"),
        Index("ix_notifications_mail_status_mail_due_at", "mail_status", "mail_due_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    # What it is about, e.g. "idle_warning:<session id>:<activity ms>": unique.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500))  # a path on the site, e.g. /sessions/ID
    session_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # pending (to be mailed at mail_due_at), sending, sent, failed (gave up), or off (not
    # mailed: the kind is turned off, or the user had the page open)
    mail_status: Mapped[str] = mapped_column(String(16))
    mail_attempts: Mapped[int] = mapped_column(Integer, default=0)
    mail_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mail_error: Mapped[str | None] = mapped_column(String(300))


class NotificationOptOut(Base):
    """A kind of notification a user asked not to be mailed (the inbox still shows it).
    Money-critical kinds cannot be turned off."""

    __tablename__ = "notification_opt_outs"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)


class QueuedLaunch(Base):
    """A launch waiting for a GPU ("tell me when it's free"): what the user asked for, kept
    until a job launches it through the same checks as a direct launch, or it is cancelled,
    expires or is no longer allowed (services/launch_queue.py). It holds nothing and costs
    nothing until it is launched."""

    __tablename__ = "launch_queue"
    __table_args__ = (
        Index("ix_launch_queue_status_tier_created_at", "status", "tier", "created_at"),
        Index("ix_launch_queue_user_id_created_at", "user_id", "created_at"),
        Index("ix_launch_queue_session_id", "session_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    tier: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    max_minutes: Mapped[int | None] = mapped_column(Integer)
    spend_cap_micros: Mapped[int | None] = mapped_column(BigInteger)
    # The idle limit its session gets, as asked when it was queued (None: never).
    idle_minutes: Mapped[int | None] = mapped_column(Integer)
    # waiting, launched (its session is starting), ready, cancelled, expired, refused
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The session the launch made (the latest, if a GPU found could not be started and the
    # launch went back to waiting).
    session_id: Mapped[str | None] = mapped_column(ForeignKey("gpu_sessions.id"))
    # Sessions made for it so far: a launch whose GPUs keep failing to start stops trying.
    tries: Mapped[int] = mapped_column(Integer, default=0)
    # Why it ended (refused, expired), or why the last GPU found could not be started.
    reason: Mapped[str | None] = mapped_column(Text)


class Conversation(Base):
    """A saved chat of one user (services/conversations.py): its title, the model it was held
    with, the session it last ran on, and its own settings (system prompt, temperature, most
    tokens per answer). Its messages are `ConversationMessage`s; `size_bytes` is their text's
    size, kept by the writer that saves them, so the size caps need no sum over messages."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_user_id_updated_at", "user_id", "updated_at"),
        Index("ix_conversations_session_id", "session_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("gpu_sessions.id", ondelete="SET NULL")
    )
    system_prompt: Mapped[str | None] = mapped_column(Text)
    temperature: Mapped[float | None] = mapped_column(Float)
    max_tokens: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConversationMessage(Base):
    """One message of a saved chat, in the order written (`id`). An answer is saved while it
    streams: `status` is streaming until it ends, then done, stopped (the reader went away) or
    failed. Token counts are what the model server reported for the answer.

    `content` is the text the model read (an attached document's text included). A question
    sent with images keeps its content parts in `parts` (domain/images.py says which), to be
    sent again when the chat carries on; `attached` is what the page showed of a question
    with files: the question as typed and each file's note, so a reload shows it the same."""

    __tablename__ = "conversation_messages"
    __table_args__ = (
        Index("ix_conversation_messages_conversation_id_id", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="done")
    model: Mapped[str | None] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    parts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    attached: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
