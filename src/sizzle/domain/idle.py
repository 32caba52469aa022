"""Idle auto-stop, as rules: which limits a user may choose, when a session without use is
warned and when it is stopped. Pure, no I/O.

A session is idle while nothing uses it: no request through the workspace API, no "Keep it
running", no GPU reading above the threshold. Its last use is `last_activity_ms`; its limit
is `idle_minutes` (None: never stopped for being idle)."""

from __future__ import annotations

from enum import StrEnum

from sizzle.domain.limits import LimitError
from sizzle.domain.money import MS_PER_MINUTE

# Who idle auto-stop's status changes are by, in session events (the operator's counts read it).
IDLE_ACTOR = "system:idle"
# What the wizard, the API and the CLI offer; the operator's default joins them if it differs.
IDLE_CHOICES = (5, 15, 30, 60)
# How long before the stop the user is warned (the live page counts down; a mail goes out).
WARN_BEFORE_MS = 2 * MS_PER_MINUTE


class IdlePhase(StrEnum):
    IN_USE = "in_use"  # used recently enough: nothing to do
    WARN = "warn"  # within WARN_BEFORE_MS of the limit: tell the user
    STOP = "stop"  # at or past the limit: pause or stop it


def idle_choices(default_minutes: int) -> tuple[int, ...]:
    """The limits a user may pick, in minutes, smallest first."""
    extra = {default_minutes} if default_minutes > 0 else set()
    return tuple(sorted(set(IDLE_CHOICES) | extra))


def default_idle_minutes(setting: int) -> int | None:
    """The operator's setting as a session's limit: 0 means never."""
    return setting if setting > 0 else None


def check_idle_minutes(minutes: int | None, *, default_minutes: int) -> int | None:
    """The limit a user chose, refused with a sentence naming the choices if it is not one."""
    choices = idle_choices(default_minutes)
    if minutes is not None and minutes not in choices:
        raise LimitError(idle_refusal(choices), field="idle_minutes")
    return minutes


def idle_refusal(choices: tuple[int, ...]) -> str:
    listed = ", ".join(str(m) for m in choices[:-1]) + f" or {choices[-1]}"
    return (
        f"An idle limit is {listed} minutes, or never (null): the session is paused or "
        "stopped after that long without use."
    )


def stop_at_ms(last_activity_ms: int | None, idle_minutes: int | None) -> int | None:
    """When the session is stopped if nothing uses it before; None if it never is."""
    if idle_minutes is None or last_activity_ms is None:
        return None
    return last_activity_ms + idle_minutes * MS_PER_MINUTE


def idle_phase(now_ms: int, last_activity_ms: int | None, idle_minutes: int | None) -> IdlePhase:
    """Where an active session stands against its idle limit at `now_ms`."""
    deadline = stop_at_ms(last_activity_ms, idle_minutes)
    if deadline is None or now_ms < deadline - WARN_BEFORE_MS:
        return IdlePhase.IN_USE
    return IdlePhase.STOP if now_ms >= deadline else IdlePhase.WARN


def busy_gpu(reading: object, threshold_percent: float) -> bool:
    """Whether a GPU reading (the provider's or NVML's, as `gpu_reading` returns it) shows any
    GPU above `threshold_percent` busy. No reading, or one without utilization, is not busy:
    activity is never assumed."""
    if not isinstance(reading, dict):
        return False
    gpus = reading.get("gpus")
    if not isinstance(gpus, list):
        return False
    for gpu in gpus:
        value = gpu.get("utilization_gpu_percent") if isinstance(gpu, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value > threshold_percent:
                return True
    return False


def idle_words(idle_minutes: int | None) -> str:
    """The limit as the pages say it."""
    if idle_minutes is None:
        return "Never: it runs until you stop it, whether used or not"
    return f"After {idle_minutes} minute{'' if idle_minutes == 1 else 's'} without use"
