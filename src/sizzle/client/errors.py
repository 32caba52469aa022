"""What goes wrong on the client side, as one message each for `error: <message>`."""

from __future__ import annotations


class ClientError(Exception):
    """Anything the CLI reports as `error: <message>` and exit status 1."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint  # a second line: what to do about it


class Unreachable(ClientError):
    """The server could not be reached, or did not answer in time."""


class ApiError(ClientError):
    """The server answered with an error: `{"error": {"code", "message"}}` and a status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        hint = "run `sizzle login` again, or check SIZZLE_API_KEY" if status == 401 else None
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
