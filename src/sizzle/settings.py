"""Settings from the environment, every name prefixed `SIZZLE_`."""

from __future__ import annotations

import ipaddress
import json
import secrets
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from limits import parse as parse_limit
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sizzle.domain.lab import LabPlan, parse_lab_tiers
from sizzle.domain.packages import DEFAULT_PACKAGES, CreditPackage, parse_packages

DEFAULT_HOME = Path.home() / ".sizzle"
_PLACEHOLDER_SECRETS = {"changeme", "secret", "changethis", "sizzle"}
# Host names of this machine, as a Host header carries them (IPv6 in brackets)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


_ASYNC_DRIVERS = {
    "postgresql://": "postgresql+asyncpg://",
    "postgres://": "postgresql+asyncpg://",
    "sqlite://": "sqlite+aiosqlite://",
}


class Settings(BaseSettings):
    """The whole configuration of one Sizzle process."""

    model_config = SettingsConfigDict(env_prefix="SIZZLE_", extra="ignore")

    home: Path = Field(DEFAULT_HOME, description="Folder for the SQLite file and the secret key.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means a SQLite file under the home folder."
    )
    secret_key: str = Field(
        "", description="Signs access tokens; generated and kept in the home folder if empty."
    )
    host: str = Field("127.0.0.1", description="Address `sizzle serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `sizzle serve` listens on.")
    providers: str = Field("demo", description="Comma list of provider plugins that are on.")
    meter_interval_seconds: float = Field(15, gt=0, description="How often the metering pass runs.")
    free_minutes: int = Field(
        5,
        ge=0,
        description="Free minutes granted once an account's address is confirmed (once per "
        "address, ever).",
    )
    legal_dir: Path | None = Field(
        None,
        description="Folder whose terms.md, acceptable-use.md and privacy.md replace the "
        "default legal documents (each file found; the others stay the defaults).",
    )
    support_email: str = Field(
        "",
        max_length=320,
        description="Where users write to the operator (a suspension, a refund): shown under "
        "the legal documents.",
    )
    demo_capacity: int = Field(
        4, ge=0, description="How many demo GPUs of each tier exist at once."
    )
    demo_provision_seconds: float = Field(
        3, ge=0, description="How long a demo GPU takes to become ready."
    )
    abandon_minutes: float = Field(
        10, gt=0, description="A ready session not started within this is stopped."
    )
    max_pause_hours: float = Field(
        24, gt=0, description="A pause longer than this ends the session."
    )
    idle_minutes: int = Field(
        15,
        ge=0,
        le=24 * 60,
        description='A running session nobody uses (no chat or workspace request, no "Keep it '
        'running", its GPU under idle_gpu_percent) is paused, or stopped where its provider '
        "cannot pause, after this many minutes; its owner is warned 2 minutes before. The "
        "default of each new session; users may choose 5, 15, 30, 60 or never. 0: never.",
    )
    idle_gpu_percent: float = Field(
        10,
        ge=0,
        le=100,
        description="A GPU reading above this utilization (percent) counts as use of the "
        "session, where its provider reports readings.",
    )
    access_token_minutes: int = Field(60 * 24, gt=0, description="Lifetime of a login token.")
    jobs_interval_seconds: float = Field(
        1, gt=0, description="How often provisioning and the reaper look for work."
    )
    queue_max_hours: float = Field(
        24,
        gt=0,
        le=24 * 31,
        description='How long a queued launch ("tell me when it\'s free") waits for a GPU '
        "before it expires and the user is told.",
    )
    queue_max_per_user: int = Field(
        3, ge=1, le=100, description="Queued launches one account may have waiting at once."
    )
    queue_hold_minutes: float = Field(
        30,
        gt=0,
        le=24 * 60,
        description="How long a GPU launched from the queue is kept ready for its user to "
        "start, at no charge, before it is given back: they were told by mail and may be away "
        "(a launch made at the page is kept abandon_minutes).",
    )
    queue_interval_seconds: float = Field(
        15,
        gt=0,
        description="How often waiting launches are retried (each pass asks the providers "
        "afresh for offers of the tiers waited for).",
    )
    vast_api_key: str = Field("", description="Vast.ai API key; the vast plugin needs it.")
    vast_api_url: str = Field(
        "https://console.vast.ai/api/v0", description="Vast.ai API base (tests point it elsewhere)."
    )
    runpod_api_key: str = Field("", description="RunPod API key; the runpod plugin needs it.")
    runpod_api_url: str = Field(
        "https://api.runpod.io",
        description="RunPod GraphQL base (served at /graphql); used only for GPU prices.",
    )
    runpod_rest_url: str = Field(
        "https://rest.runpod.io/v1", description="RunPod REST API base: pods are managed here."
    )
    lambda_api_key: str = Field("", description="Lambda Cloud API key; the lambda plugin needs it.")
    lambda_api_url: str = Field(
        "https://cloud.lambdalabs.com/api/v1", description="Lambda Cloud API base."
    )
    ollama_nodes: str = Field(
        "[]",
        description="JSON list of the operator's Ollama nodes: "
        "{name, url, gpu, gpu_count, vram_gb, price_per_hour_usd}, and optionally agent_url, "
        "token, or ssh and ssh_host_key to reach the node over SSH.",
    )
    ollama_ssh_key_file: Path | None = Field(
        None,
        description="The private key (OpenSSH, unencrypted) that Sizzle logs in with to the "
        "Ollama nodes reached over SSH; their authorized_keys hold its public half.",
    )
    provider_timeout_seconds: float = Field(
        10, gt=0, description="Timeout of one call to a provider's API."
    )
    ollama_probe_timeout_seconds: float = Field(
        2,
        gt=0,
        description="How long one Ollama node may take to answer a probe before it is left "
        "out of the offers and shown unhealthy (at most half the provider timeout).",
    )
    chat_stall_seconds: float = Field(
        10,
        gt=0,
        description="A chat stream whose client has stopped reading for this long is closed, "
        "and the model server's generation with it.",
    )
    chat_max_bytes_per_conversation: int = Field(
        2_000_000,
        ge=1_000,
        description="Text and images one saved chat may hold (bytes); past it, the chat takes "
        "no new messages and the user is asked to start a new one.",
    )
    chat_max_bytes_per_user: int = Field(
        50_000_000,
        ge=1_000,
        description="Text and images all of one account's saved chats may hold together "
        "(bytes); past it, no chat takes new messages until some are deleted.",
    )
    chat_read_timeout_seconds: float = Field(
        300,
        gt=0,
        description="How long the chat proxy waits for the model server's next bytes "
        "(loading a large model before the first token can take minutes).",
    )
    max_streams_per_user: int = Field(
        20,
        ge=1,
        description="Live session streams (pages and /events) one account may have open at "
        "once in one process; more is a 429.",
    )
    provider_cost_multipliers: str = Field(
        "{}",
        description="JSON map provider -> factor applied to its upstream price when ranking "
        'offers, e.g. {"vast": 1.2} to prefer others unless Vast is 20% cheaper.',
    )
    max_offers_tried: int = Field(10, ge=1, description="Offers tried per launch at most.")
    launch_deadline_seconds: float = Field(
        600, gt=0, description="A launch stops trying further offers after this long."
    )
    provision_timeout_seconds: float = Field(
        900,
        gt=0,
        description="A launched instance not running by then is destroyed; "
        "the next offer is tried.",
    )
    reconcile_interval_seconds: float = Field(
        60, gt=0, description="How often provider instances are compared with sessions."
    )
    credit_packages: str = Field(
        DEFAULT_PACKAGES,
        description="JSON list of credit packages: {id, price_usd, bonus_percent}.",
    )
    lab_price_usd: Decimal = Field(
        Decimal("19"), gt=0, le=10_000, description="Sizzle Lab, the monthly plan: its price."
    )
    lab_included_minutes: int = Field(
        600, gt=0, le=1_000_000, description="GPU minutes Sizzle Lab includes each month."
    )
    lab_tiers: str = Field(
        "starter,pro", description="Comma-separated tiers the Lab's included minutes pay for."
    )
    stripe_secret_key: str = Field(
        "", description="Stripe secret key; without one, buying credit is switched off."
    )
    stripe_webhook_secret: str = Field(
        "", description="Signing secret of the Stripe webhook endpoint (whsec_...)."
    )
    stripe_api_base: str = Field(
        "https://api.stripe.com", description="Stripe's API base (tests point it elsewhere)."
    )
    public_url: str = Field(
        "",
        description="Where browsers reach Sizzle (https://gpu.example.com), for the links in "
        "mails and Stripe's return links; never taken from a request. Unset: the loopback "
        "address Sizzle listens on, and `sizzle serve` refuses any other address.",
    )
    allowed_hosts: str = Field(
        "",
        description="Comma list of the Host names requests may carry (`*.example.com` allowed, "
        "`*` turns the check off); unset: the public URL's host and localhost, 127.0.0.1, [::1].",
    )
    smtp_url: str = Field(
        "",
        description="Mail for sign-up checks and password resets: smtp://host:port (plain), "
        "smtp+starttls://user:password@host:587 or smtps://user:password@host:465; "
        "unset, mails are appended to the mail file instead.",
    )
    mail_file: Path | None = Field(
        None,
        description="Where mails go without SMTP (made readable by its owner only); "
        "unset: mail.log in the home folder.",
    )
    mail_from: str = Field("Sizzle <no-reply@sizzle.localhost>", description="Mails' sender.")
    notification_mails_per_hour: int = Field(
        12,
        ge=1,
        le=1000,
        description="Notification mails one account is sent in an hour at most; beyond it the "
        "inbox still shows them, and only those about money are mailed.",
    )
    notification_interval_seconds: float = Field(
        15,
        gt=0,
        description="How often notification mails are sent and running sessions checked for "
        'their "still running" reminder.',
    )
    password_reset_minutes: int = Field(
        60, gt=0, le=24 * 60, description="How long a password reset link works."
    )
    email_verification_hours: int = Field(
        72, gt=0, le=30 * 24, description="How long an email verification link works."
    )
    redis_url: str = Field(
        "",
        description="redis://host:port/db: rate limits shared by every replica; "
        "unset, each process counts on its own.",
    )
    metrics_token: str = Field(
        "",
        description="If set, /metrics wants `Authorization: Bearer <this>` (Prometheus "
        "`authorization` config); unset, /metrics is open: keep it on an internal network.",
    )
    rate_limits_enabled: bool = Field(True, description="Switch the rate limits off (tests).")
    rate_limit_per_user: str = Field("600/minute", description="API requests per account.")
    rate_limit_per_key: str = Field("600/minute", description="API requests per API key.")
    rate_limit_per_ip: str = Field("1200/minute", description="API requests per IP address.")
    rate_limit_sign_in_per_ip: str = Field(
        "50/15minutes", description="Sign-in, sign-up and password attempts per IP address."
    )
    sign_in_free_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Wrong passwords for one account from one address before that address "
        "must wait (1 s, doubling each time); a right password clears them.",
    )
    sign_in_backoff_max_seconds: int = Field(
        900, ge=1, le=24 * 3600, description="The longest such wait, in seconds."
    )
    rate_limit_account_mail_per_account: str = Field(
        "5/hour", description="Password-reset and confirmation mails asked for, per account."
    )
    rate_limit_account_mail_per_ip: str = Field(
        "20/hour", description="Password-reset and confirmation mails asked for, per IP address."
    )
    test_clock_file: Path | None = Field(
        None,
        description="Tests only: read the current time (epoch seconds) from this file.",
    )

    @field_validator("secret_key")
    @classmethod
    def _refuse_placeholder(cls, value: str) -> str:
        if value and (value.lower() in _PLACEHOLDER_SECRETS or len(value) < 16):
            raise ValueError("SIZZLE_SECRET_KEY must be a real secret of at least 16 characters")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_is_one_we_speak(cls, value: str) -> str:
        if value and value.split("://", 1)[0] not in ("smtp", "smtp+starttls", "smtps"):
            raise ValueError(
                "SIZZLE_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_an_address(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname or parts.query):
            raise ValueError("SIZZLE_PUBLIC_URL must look like https://gpu.example.com")
        return value.rstrip("/")

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_are_names_or_wildcards(cls, value: str) -> str:
        for pattern in _split(value):
            stray_star = "*" in pattern[1:] or pattern[:1] == "*" and pattern[:2] != "*."
            if stray_star and pattern != "*":
                raise ValueError(
                    "SIZZLE_ALLOWED_HOSTS takes names like gpu.example.com or *.example.com"
                )
        return value

    @field_validator("provider_cost_multipliers")
    @classmethod
    def _multipliers_are_a_json_map(cls, value: str) -> str:
        _parse_multipliers(value)
        return value

    @field_validator(
        "rate_limit_per_user",
        "rate_limit_per_key",
        "rate_limit_per_ip",
        "rate_limit_sign_in_per_ip",
        "rate_limit_account_mail_per_account",
        "rate_limit_account_mail_per_ip",
    )
    @classmethod
    def _limit_parses(cls, value: str) -> str:
        try:
            parse_limit(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit like 600/minute") from None
        return value

    @field_validator("credit_packages")
    @classmethod
    def _packages_parse(cls, value: str) -> str:
        parse_packages(value)
        return value

    @model_validator(mode="after")
    def _lab_is_valid(self) -> Settings:
        self.lab  # noqa: B018 - raises ValueError (a settings error) when the Lab is misconfigured
        return self

    @property
    def lab(self) -> LabPlan:
        return LabPlan(
            price_usd=self.lab_price_usd,
            included_minutes=self.lab_included_minutes,
            tiers=parse_lab_tiers(self.lab_tiers),
        )

    @property
    def queue_max_wait(self) -> timedelta:
        """How long a queued launch waits for a GPU before it expires."""
        return timedelta(hours=self.queue_max_hours)

    @property
    def packages(self) -> list[CreditPackage]:
        return parse_packages(self.credit_packages)

    @property
    def cost_multipliers(self) -> dict[str, Decimal]:
        return _parse_multipliers(self.provider_cost_multipliers)

    @property
    def enabled_providers(self) -> list[str]:
        return [name.strip() for name in self.providers.split(",") if name.strip()]

    @property
    def resolved_database_url(self) -> str:
        """The URL with Sizzle's async drivers: a plain `postgresql://` (as most tools write
        it) means asyncpg, and a plain `sqlite://` aiosqlite."""
        url = self.database_url or f"sqlite+aiosqlite:///{self.home / 'sizzle.db'}"
        for plain, driver in _ASYNC_DRIVERS.items():
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @property
    def public_base_url(self) -> str:
        """Where the links in mails and Stripe's return links point: the public URL, else the
        loopback address Sizzle listens on; never a request's Host, which its sender chooses."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if is_loopback(self.host) else "127.0.0.1"
        return f"http://{_bracketed(host)}:{self.port}"

    @property
    def trusted_hosts(self) -> list[str]:
        """The Host names a request may carry."""
        if _split(self.allowed_hosts):
            return [pattern.lower() for pattern in _split(self.allowed_hosts)]
        public = urlsplit(self.public_url).hostname if self.public_url else None
        return ([_bracketed(public)] if public else []) + list(LOOPBACK_HOSTS)

    def make_home(self) -> Path:
        """The home folder, made enterable by its owner only (it holds the secret key, the
        SQLite file and the mail file); the default ~/.sizzle is narrowed if an older Sizzle
        made it wider."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.home == DEFAULT_HOME:
            self.home.chmod(0o700)
        return self.home

    @property
    def resolved_mail_file(self) -> Path:
        return self.mail_file or self.home / "mail.log"

    @property
    def is_default_database(self) -> bool:
        return not self.database_url

    @cached_property
    def resolved_secret_key(self) -> str:
        """The given key, or one generated on first run and kept beside the SQLite file."""
        if self.secret_key:
            return self.secret_key
        path = self.home / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.make_home()
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key)
        return key


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bracketed(host: str) -> str:
    """An IPv6 address as it stands in a URL or a Host header."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _parse_multipliers(raw: str) -> dict[str, Decimal]:
    try:
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise TypeError
        multipliers = {str(k): Decimal(str(v)) for k, v in parsed.items()}
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValueError(
            'SIZZLE_PROVIDER_COST_MULTIPLIERS must be a JSON map like {"vast": 1.2}'
        ) from exc
    if any(not m.is_finite() or m <= 0 for m in multipliers.values()):
        raise ValueError("cost multipliers must be positive numbers")
    return multipliers
