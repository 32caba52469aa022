"""What the launch wizard has gathered, as its query (and the confirm step's form) carry it
from step to step, read and checked by the same rules the API uses (domain/limits.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from sizzle.domain.idle import check_idle_minutes, idle_choices, idle_words
from sizzle.domain.idle import default_idle_minutes as default_idle_minutes_of
from sizzle.domain.limits import (
    LimitError,
    SessionLimits,
    check_limits,
    parse_minutes,
    parse_usd_amount,
)
from sizzle.domain.money import micros_to_cents_str
from sizzle.domain.tiers import TIERS, Tier

NO_MODEL = "none"  # the model step's "just the GPU": chosen, unlike a model not chosen yet
NEVER = "never"  # the idle limit's "never stop it for being idle"


@dataclass(frozen=True)
class LaunchChoice:
    """The tier, model and limits chosen so far; the limits as typed, and what is wrong."""

    tier: Tier | None
    model: str | None  # a library slug, an Ollama tag, or None for no model (or none yet)
    model_chosen: bool  # False: the model step has not been answered yet
    max_minutes_text: str = ""
    spend_cap_text: str = ""
    max_minutes: int | None = None
    spend_cap_micros: int | None = None
    idle_minutes: int | None = None  # None: never stopped for being idle
    idle_options: tuple[int, ...] = ()
    problems: dict[str, str] = field(default_factory=dict)  # field -> the sentence

    @property
    def idle_value(self) -> str:
        """The idle limit as the form sends it: minutes, or "never"."""
        return NEVER if self.idle_minutes is None else str(self.idle_minutes)

    @property
    def idle_words(self) -> str:
        return idle_words(self.idle_minutes)

    @property
    def limits(self) -> SessionLimits | None:
        """The limits at the tier's price; None while a tier or a limit is missing or wrong."""
        if self.tier is None or "max_minutes" in self.problems or "spend_cap" in self.problems:
            return None
        return SessionLimits(
            self.max_minutes, self.spend_cap_micros, self.tier.price_micros_per_minute
        )

    @property
    def spend_cap_usd(self) -> str:
        return micros_to_cents_str(self.spend_cap_micros) if self.spend_cap_micros else ""

    def query(self, **override: object) -> str:
        """The query string that carries this choice to another step."""
        model = self.model if self.model else (NO_MODEL if self.model_chosen else None)
        values: dict[str, object] = {
            "tier": self.tier.name if self.tier else None,
            "model": model,
            "max_minutes": self.max_minutes if self.max_minutes else self.max_minutes_text,
            "spend_cap": self.spend_cap_usd or self.spend_cap_text,
            "idle": self.idle_value,
        }
        values.update(override)
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def read_idle(text: str | None, *, default_minutes: int) -> int | None:
    """The idle limit as the form sends it: minutes from the choices, "never", or nothing
    (the operator's default). LimitError, naming the choices, for anything else."""
    raw = (text or "").strip().lower()
    if not raw:
        return default_idle_minutes_of(default_minutes)
    if raw == NEVER:
        return None
    if not raw.isdecimal() or len(raw) > 5:
        check_idle_minutes(-1, default_minutes=default_minutes)  # raises, with the sentence
    return check_idle_minutes(int(raw), default_minutes=default_minutes)


def read_choice(
    tier: str | None,
    model: str | None,
    max_minutes: str | None,
    spend_cap: str | None,
    idle: str | None = None,
    *,
    default_idle_minutes: int = 0,
) -> LaunchChoice:
    """The choice as sent, each limit checked at the chosen tier's price; the idle limit
    against the choices (`default_idle_minutes`, the operator's, when none is sent)."""
    problems: dict[str, str] = {}
    chosen_tier = TIERS.get(tier or "")
    if tier and chosen_tier is None:
        problems["tier"] = f"There is no tier called {tier[:32]}. Choose one of the tiers below."
    minutes_text = (max_minutes or "").strip()
    cap_text = (spend_cap or "").strip()
    minutes: int | None = None
    cap: int | None = None
    if minutes_text:
        try:
            minutes = parse_minutes(minutes_text)
        except LimitError as exc:
            problems["max_minutes"] = exc.message
    if cap_text:
        try:
            cap = parse_usd_amount(cap_text)
        except LimitError as exc:
            problems["spend_cap"] = exc.message
    if chosen_tier is not None and "max_minutes" not in problems and "spend_cap" not in problems:
        try:
            check_limits(
                max_minutes=minutes,
                spend_cap_micros=cap,
                price_micros_per_minute=chosen_tier.price_micros_per_minute,
            )
        except LimitError as exc:
            problems[exc.field] = exc.message
            cap = None if exc.field == "spend_cap" else cap
    idle_minutes = default_idle_minutes_of(default_idle_minutes)
    try:
        idle_minutes = read_idle(idle, default_minutes=default_idle_minutes)
    except LimitError as exc:
        problems["idle_minutes"] = exc.message
    slug = (model or "").strip()
    return LaunchChoice(
        tier=chosen_tier,
        model=None if slug in ("", NO_MODEL) else slug,
        model_chosen=model is not None,
        max_minutes_text=minutes_text,
        spend_cap_text=cap_text,
        max_minutes=minutes,
        spend_cap_micros=cap,
        idle_minutes=idle_minutes,
        idle_options=idle_choices(default_idle_minutes),
        problems=problems,
    )
