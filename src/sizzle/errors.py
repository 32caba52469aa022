"""Domain errors: one hierarchy, each with a code and an HTTP status, mapped once in the app."""

from __future__ import annotations


class SizzleError(Exception):
    """Base of every error Sizzle reports to a client."""

    code = "error"
    status_code = 400

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details  # machine-readable facts about the error, sent as "details"
        if code:
            self.code = code


class BadRequest(SizzleError):
    code = "bad_request"
    status_code = 400


class Unauthorized(SizzleError):
    code = "unauthorized"
    status_code = 401


class InsufficientCredit(SizzleError):
    code = "insufficient_credit"
    status_code = 402


class Forbidden(SizzleError):
    code = "forbidden"
    status_code = 403


class NotFound(SizzleError):
    code = "not_found"
    status_code = 404


class Conflict(SizzleError):
    code = "conflict"
    status_code = 409


class InvalidTransition(Conflict):
    code = "invalid_transition"


class BudgetReached(Conflict):
    """The account's monthly budget leaves no room for a session's next minute."""

    code = "budget_reached"


class ValidationFailed(SizzleError):
    code = "validation_error"
    status_code = 422


class NoCapacity(SizzleError):
    code = "no_capacity"
    status_code = 503


class ProviderUnavailable(SizzleError):
    code = "provider_unavailable"
    status_code = 503


class BadCredentials(ProviderUnavailable):
    """The provider refused our API key: the provider is switched off until fixed."""

    code = "provider_bad_credentials"


class ProviderBadRequest(ProviderUnavailable):
    """The provider refused what we sent: a bug or a changed API, not worth retrying."""

    code = "provider_bad_request"


class InstanceUnreachable(ProviderUnavailable):
    """A rented instance's SSH server could not be reached, or the connection to it was lost."""

    code = "instance_unreachable"


class InstanceKeyRefused(InstanceUnreachable):
    """The instance's SSH server refused the session's key."""

    code = "instance_key_refused"


class HostKeyChanged(InstanceUnreachable):
    """The instance presented a host key other than the one pinned on first connect."""

    code = "host_key_changed"


class KeyUnreadable(InstanceUnreachable):
    """A session's sealed SSH key did not open: another secret key, another row, tampering."""

    code = "instance_key_unreadable"


class PayloadTooLarge(SizzleError):
    code = "too_large"
    status_code = 413


class UnsupportedMediaType(SizzleError):
    code = "unsupported_media_type"
    status_code = 415


class LengthRequired(SizzleError):
    code = "length_required"
    status_code = 411


class RateLimited(SizzleError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after: int | None = None, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after  # seconds, sent as Retry-After


class BadGateway(SizzleError):
    """A session's own server (its model) failed or could not be reached."""

    code = "upstream_error"
    status_code = 502


class GatewayTimeout(BadGateway):
    code = "upstream_timeout"
    status_code = 504
