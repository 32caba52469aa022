"""The public JSON shapes of /api/v1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
)

from sizzle.domain.money import usd_text
from sizzle.errors import ValidationFailed
from sizzle.services.accounts import normal_email

T = TypeVar("T")


def refuse_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters: refuse them as bad input, not a 500."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Every client-given string that reaches the database is a CleanStr (or a path param like it).
CleanStr = Annotated[str, AfterValidator(refuse_nul)]


def email_address(value: str) -> str:
    """The address as accounts key it, by the one validator the pages use too."""
    try:
        return normal_email(value)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None


# An account's address, wherever one is given: sign-up, sign-in, password reset.
EmailAddress = Annotated[
    str,
    Field(max_length=320),
    AfterValidator(email_address),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 320}),
]


def iso_text(value: object) -> object:
    """A moment is ISO 8601 text, as the schema says: not a number read as a Unix time."""
    # A query parameter is always text: "0.5" is a number still, however it came.
    if not isinstance(value, str | datetime) or (isinstance(value, str) and _is_number(value)):
        raise ValueError("must be an ISO 8601 date and time, like 2026-03-01T12:00:00Z")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def in_utc(value: datetime) -> datetime:
    """The moment in UTC, as it is stored; one that UTC cannot hold (the first hours of year 1,
    the last of 9999) is bad input, not a 500."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be between the years 1 and 9999 in UTC") from None


# Every client-given date and time that reaches the database is a Moment.
Moment = Annotated[AwareDatetime, BeforeValidator(iso_text), AfterValidator(in_utc)]


def usd(micros: int) -> str:
    """Exact dollars as text, at least two decimals: 150000 -> '0.15', 123456 -> '0.123456'."""
    return usd_text(micros)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailAddress
    password: str = Field(max_length=256)
    name: CleanStr | None = Field(None, max_length=200)
    accept_terms: bool = Field(
        False,
        description="Must be true: the user accepts the Terms of Service and the Acceptable Use "
        "Policy, and has read the Privacy Policy (GET /api/v1/auth/terms lists them). Without "
        "it: 422 `terms_not_accepted`.",
    )


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailAddress
    password: str = Field(max_length=256)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None
    plan: str
    is_admin: bool
    free_minutes: int
    balance_usd: str
    created_at: datetime
    email_verified: bool


class RegisterOut(TokenOut):
    user: UserOut


class EmailVerificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=2000)


class PasswordResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailAddress


class PasswordResetConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=2000)
    password: str = Field(max_length=256)


class AccountDeleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(max_length=256)


class TierOut(BaseModel):
    name: str
    gpu_types: list[str]
    min_gpus: int
    max_gpus: int
    min_vram_gb: int
    price_per_minute_usd: str
    price_per_hour_usd: str
    good_for: str


class AvailabilityOut(BaseModel):
    tier: str
    available: bool
    from_price_per_minute_usd: str
    offers: int


class SessionCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: CleanStr = Field(max_length=32)
    model: CleanStr | None = Field(None, max_length=200)
    # Strict: JSON true or 2.0 is not a number of minutes (lax mode would read them as 1, 2).
    max_minutes: StrictInt | None = Field(
        None, description="Stop after this many minutes (1 to 43,200).", examples=[60]
    )
    idle_minutes: StrictInt | None = Field(
        None,
        description="Pause the session (stop it where its provider cannot pause) after this "
        "many minutes without use: 5, 15, 30 or 60, or null for never. Left out: the "
        "server's default (SIZZLE_IDLE_MINUTES, 15). Use is a request through the workspace "
        "API, POST /sessions/{id}/keep-alive, or the GPU busier than SIZZLE_IDLE_GPU_PERCENT.",
        examples=[30],
    )
    spend_cap_usd: CleanStr | None = Field(
        None,
        max_length=32,
        description=(
            "Stop before this much is charged: dollars as text, as a person writes them "
            '("2.50", "2,50", "$2.50"); at least one minute\'s price. The session stops at the '
            "end of the last minute the cap pays for, or at `max_minutes` if that comes first."
        ),
        examples=["2.50"],
    )


class ProgressOut(BaseModel):
    phase: str
    percent: int | None = Field(description="0-100 where the phase has a measure.")


class WorkspaceOut(BaseModel):
    chat_available: bool = Field(description="Whether /v1/chat/completions can reach the model.")
    message: str | None = Field(description="Why not, in plain words.")
    sees_images: bool | None = Field(
        None,
        description="Whether the model takes images in a chat (the library lists it as a "
        "vision model); null when the library does not know the model or it cannot chat now.",
    )


class SessionOut(BaseModel):
    id: str
    status: str
    tier: str
    model: str | None = Field(description="The Ollama tag the session runs, or none.")
    model_name: str | None = Field(
        None,
        description='The model as the library names it ("Llama 3.1 8B"); its tag when the '
        "library does not know it.",
    )
    provider: str | None = Field(None, description="Admins only.")
    gpu_type: str | None
    gpu_count: int | None
    price_per_minute_usd: str
    max_minutes: int | None
    idle_minutes: int | None = Field(
        description="Paused (or stopped) after this many minutes without use; null: never."
    )
    idle_stop_at: datetime | None = Field(
        description="While active: when it is paused or stopped unless something uses it "
        "before (a request, keep-alive, a busy GPU). Null when it is not running or never is."
    )
    idle_seconds_left: float | None = Field(
        description="Seconds from the server's now until idle_stop_at (a countdown that does "
        "not depend on the client's clock); null with it."
    )
    active_seconds: float
    charged_minutes: int = Field(
        description="Minutes charged so far, each started minute once and in advance, whatever "
        "paid it: free_minutes_used + plan_minutes_used + credit_minutes."
    )
    cost_usd: str = Field(
        description="The list price of the charged minutes (charged_minutes × "
        "price_per_minute_usd), whatever paid them. Not what was charged: free and Sizzle Lab "
        "minutes cost no money; see charged_usd."
    )
    free_minutes_used: int = Field(description="Charged minutes paid with free minutes.")
    plan_minutes_used: int = Field(
        description="Charged minutes paid with Sizzle Lab's included minutes."
    )
    credit_minutes: int = Field(description="Charged minutes paid with credit.")
    credit_charged_micros: int = Field(
        description="What credit paid for this session, in micro-dollars: its minute charges in "
        "the ledger less the minutes given back.",
    )
    charged_usd: str = Field(
        description="credit_charged_micros as exact dollars: what this session cost."
    )
    charges_text: str = Field(
        description="The same in words, as the pages and the CLI say it, e.g. "
        "'3 free minutes used · $0.00 charged' (dollars rounded to cents).",
    )
    created_at: datetime
    ready_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    error: str | None
    progress: ProgressOut | None = Field(
        None, description="While the GPU is prepared: what the provider is doing."
    )
    workspace: WorkspaceOut
    warnings: list[str] = Field(
        default_factory=list, description="Things to know about the request (on create)."
    )


class BalanceOut(BaseModel):
    balance_usd: str
    balance_micros: int
    free_minutes: int
    included_minutes: int = Field(0, description="Sizzle Lab minutes left this month.")


class TransactionOut(BaseModel):
    id: int
    kind: str
    direction: str = Field(
        description="'in' adds to the user's balance, 'out' spends from it, 'card' was paid by "
        "card without touching it (Sizzle Lab)."
    )
    amount: int = Field(description="Micro-dollars, or minutes when unit is 'minutes'.")
    unit: str
    balance: str | None = Field(
        None,
        description="Which of my balances moved: credit, free_minutes or included_minutes "
        "(Sizzle Lab); null for a card payment.",
    )
    amount_usd: str | None
    session_id: str | None
    minute: int | None
    memo: str | None
    created_at: datetime


class ErrorBody(BaseModel):
    code: str = Field(description="Stable and machine-readable, e.g. `insufficient_credit`.")
    message: str = Field(description="What went wrong, in plain words.")
    details: Any = Field(
        None,
        description="Facts about the error where there are any: for a 422, a list of "
        "`{field, problem}`.",
    )


class ErrorOut(BaseModel):
    error: ErrorBody


class ChatStatsOut(BaseModel):
    requests: int
    succeeded: int
    failed: int
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    median_time_to_first_token_ms: int | None
    tokens_per_second: float | None


class SessionMetricsOut(BaseModel):
    session_id: str
    chat: ChatStatsOut = Field(description="Requests through /v1/chat/completions.")
    gpu: dict[str, Any] | None = Field(
        description="The GPU as the provider or the node's NVML reads it now; null where the "
        "provider cannot tell. Never an estimate."
    )
