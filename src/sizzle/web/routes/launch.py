"""The launch wizard: tier, model, limits, confirm; only the last step changes anything."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sizzle.api.deps import StateDep
from sizzle.catalog import CATEGORIES
from sizzle.db.models import User
from sizzle.domain.tiers import PLANS, TIERS, Tier
from sizzle.errors import SizzleError
from sizzle.services import budget, idempotency, launch_queue, ledger, model_library, sessions
from sizzle.services import recommend as recommender
from sizzle.services.ledger import Balances
from sizzle.state import AppState
from sizzle.web.deps import CsrfChecked, SignedIn
from sizzle.web.launch_form import LaunchChoice, read_choice
from sizzle.web.render import render
from sizzle.web.routes.public import tier_cards

CHAT_ID = re.compile(r"[0-9a-f]{32}")
router = APIRouter(include_in_schema=False)

WIZARD_STEPS = (
    ("tier", "Power"),
    ("model", "Model"),
    ("options", "Limits"),
    ("confirm", "Confirm"),
)
MODELS_SHOWN = 24
# The model step's "what for?": a task the recommender reads, and its words on the page.
TASKS = (
    ("chat", "Chat and writing"),
    ("code", "Coding"),
    ("vision", "Reading images"),
    ("reasoning", "Maths and reasoning"),
    ("embedding", "Search (embeddings)"),
)
TASK_NAMES = {name for name, _ in TASKS}
# The confirm form's one-time key goes to the API's idempotency keys under its own prefix.
FORM_KEY_PREFIX = "launch-form:"


def _model_rows(
    tier: Tier, search: str | None, category: str | None, *, leave_out: set[str]
) -> tuple[list[dict[str, object]], int]:
    found, total = model_library.search_models(
        search=search, category=category, limit=MODELS_SHOWN + len(leave_out), offset=0
    )
    rows = []
    for model in [m for m in found if m.slug not in leave_out][:MODELS_SHOWN]:
        fits = [
            model_library.build_fit(model, q, context=model_library.DEFAULT_CONTEXT)
            for q in model.quantizations
        ]
        fitting = [f for f in fits if f.fits[tier.name]]
        smallest = min(fits, key=lambda f: f.estimate.total_gb)
        rows.append(
            {
                "model": model,
                "fits": bool(fitting),
                "vram_gb": round((fitting[0] if fitting else smallest).estimate.total_gb, 1),
                "needs": smallest.cheapest_tier.name if smallest.cheapest_tier else None,
                "laptop": smallest.runs_on_a_laptop,
            }
        )
    return rows, total


def _model_step(
    choice: LaunchChoice, *, task: str | None, q: str | None, category: str | None
) -> dict[str, object]:
    """The recommended models for the tier and task first, the first of them chosen unless
    the user chose already; then the library, searchable."""
    assert choice.tier is not None  # noqa: S101 - the caller checked
    task = task if task in TASK_NAMES else "chat"
    picks = recommender.recommend(task, tier=choice.tier, limit=3)
    chosen = choice.model if choice.model_chosen else (picks[0].model.slug if picks else None)
    rows, total = _model_rows(choice.tier, q, category, leave_out={p.model.slug for p in picks})
    return {
        "picks": picks,
        "task": task,
        "tasks": TASKS,
        "chosen_model": chosen,
        "models": rows,
        "total": total,
        "q": q or "",
        "category": category or "",
        "categories": CATEGORIES,
    }


async def _money(state: AppState, user: User) -> Balances:
    async with state.db.read() as tx:
        return await ledger.balances(tx, user.id)


def _affordable(state: AppState, money: Balances, tier: Tier) -> int:
    return money.minutes_at(
        tier.price_micros_per_minute, lab_covered=state.settings.lab.covers(tier.name)
    )


async def _tier_step(state: AppState, user: User) -> dict[str, object]:
    """The tiers, with what the user's plan and money allow of each."""
    plan = PLANS[user.plan]
    money = await _money(state, user)
    async with state.db.read() as tx:
        month = await budget.month_state(tx, user.id, now=state.clock.now())
    cards = await tier_cards(state)
    for card in cards:
        tier = TIERS[str(card["name"])]
        card["in_plan"] = tier.name in plan.allowed_tiers
        card["affordable"] = _affordable(state, money, tier)
    can_pay_any = any(card["affordable"] for card in cards if card["in_plan"])
    return {
        "tiers": cards,
        "plan": plan.name,
        "money": money,
        "can_pay_any": can_pay_any,
        # the budget refuses every start until the next month or a larger budget
        "budget_refusal": month.refusal() if month.reached else None,
    }


def _model_name(model: str | None) -> str | None:
    """The library's name of a model slug ("Llama 3.1 8B"); another name as it was given."""
    if model is None:
        return None
    try:
        return model_library.get_model(model).name
    except SizzleError:
        return model


async def _confirm_context(state: AppState, user: User, choice: LaunchChoice) -> dict[str, Any]:
    assert choice.tier is not None  # noqa: S101 - the caller checked
    money = await _money(state, user)
    affordable = _affordable(state, money, choice.tier)
    limits = choice.limits
    limit = limits.minutes if limits else None
    return {
        "model_name": _model_name(choice.model),
        "money": money,
        "affordable": affordable,
        "lasts": min(affordable, limit) if limit else affordable,
        "limit": limit,
        "limits": limits,
        "form_key": uuid.uuid4().hex,
        "queue_wait": _hours_text(state.settings.queue_max_hours),
        "queue_hold": f"{state.settings.queue_hold_minutes:g} minutes",
    }


def _hours_text(hours: float) -> str:
    """24 hours, 1 hour, 1.5 hours."""
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


@router.get("/launch", response_class=HTMLResponse)
async def launch_wizard(
    request: Request,
    state: StateDep,
    user: SignedIn,
    step: Annotated[str, Query(max_length=16)] = "tier",
    tier: Annotated[str | None, Query(max_length=32)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    max_minutes: Annotated[str | None, Query(max_length=32)] = None,
    spend_cap: Annotated[str | None, Query(max_length=32)] = None,
    idle: Annotated[str | None, Query(max_length=16)] = None,
    task: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=32)] = None,
    chat: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Four steps, each a GET form that carries the earlier answers: tier, model, limits,
    confirm. Only the confirm step's POST changes anything. A limit that cannot be used sends
    the confirm step back to the limits, saying why: it never offers to launch without it."""
    choice = read_choice(
        tier, model, max_minutes, spend_cap, idle, default_idle_minutes=state.settings.idle_minutes
    )
    steps = [name for name, _ in WIZARD_STEPS]
    if step not in steps or (step != "tier" and choice.tier is None):
        step = "tier"
    if step == "confirm" and choice.problems:
        step = "options"
    context: dict[str, object] = {"steps": WIZARD_STEPS, "step": step, "choice": choice}
    context["carry_chat"] = carried_chat(chat)
    status = 422 if choice.problems and step != "tier" or "tier" in choice.problems else 200
    if step == "tier":
        context.update(await _tier_step(state, user))
    elif step == "model":
        context.update(_model_step(choice, task=task, q=q, category=category))
    elif step == "options":
        context.update(await _confirm_context(state, user, choice))
    else:
        assert choice.tier is not None  # noqa: S101 - checked above
        warnings: list[str] = []
        if choice.model:
            try:
                warnings = list(
                    model_library.choose_session_model(choice.model, choice.tier).warnings
                )
            except SizzleError as exc:
                context.update(step="model", model_problem=exc.message)
                context.update(_model_step(choice, task=task, q=None, category=None))
                return render(
                    request, "sessions/launch.html", user=user, status_code=422, **context
                )
        context.update(await _confirm_context(state, user, choice), warnings=warnings)
    return render(request, "sessions/launch.html", user=user, status_code=status, **context)


@router.get("/launch/limits", response_class=HTMLResponse)
async def limits_preview(
    request: Request,
    state: StateDep,
    user: SignedIn,
    tier: Annotated[str, Query(max_length=32)],
    max_minutes: Annotated[str | None, Query(max_length=32)] = None,
    spend_cap: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """What the limits as typed so far come to (the limits step asks as the user types)."""
    choice = read_choice(
        tier, None, max_minutes, spend_cap, default_idle_minutes=state.settings.idle_minutes
    )
    if choice.tier is None:
        return HTMLResponse("", status_code=422)
    context = await _confirm_context(state, user, choice)
    return render(
        request, "sessions/_limits_preview.html", user=user, choice=choice, live=True, **context
    )


@router.post("/launch", dependencies=[CsrfChecked])
async def launch(
    request: Request,
    state: StateDep,
    user: SignedIn,
    tier: Annotated[str, Form(max_length=32)],
    model: Annotated[str, Form(max_length=200)] = "",
    max_minutes: Annotated[str, Form(max_length=32)] = "",
    spend_cap: Annotated[str, Form(max_length=32)] = "",
    idle: Annotated[str, Form(max_length=16)] = "",
    form_key: Annotated[str, Form(max_length=64)] = "",
    chat: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Create the session and go to its live page (which opens the saved chat carried on, if
    one is); a refusal is explained on the confirm step.

    The confirm form carries a one-time key: sent twice (a double click, a reload, the back
    button), it leads to the session the first one made."""
    choice = read_choice(
        tier,
        model or "none",
        max_minutes,
        spend_cap,
        idle,
        default_idle_minutes=state.settings.idle_minutes,
    )
    if choice.tier is None:
        return RedirectResponse(f"/launch?{choice.query(step='tier')}", status_code=303)
    if choice.problems:
        context = await _confirm_context(state, user, choice)
        return render(
            request,
            "sessions/launch.html",
            user=user,
            status_code=422,
            steps=WIZARD_STEPS,
            step="options",
            choice=choice,
            **context,
        )
    key = FORM_KEY_PREFIX + form_key if form_key else None
    try:
        chosen = (
            model_library.choose_session_model(choice.model, choice.tier) if choice.model else None
        )
        launched = await sessions.launch_session(
            state.db,
            state.orchestrator,
            user_id=user.id,
            tier_name=choice.tier.name,
            model=chosen.ollama_tag if chosen else None,
            max_minutes=choice.max_minutes,
            spend_cap_micros=choice.spend_cap_micros,
            idle_minutes=choice.idle_minutes,
            idempotency_key=idempotency.check_key(key) if key else None,
            now=state.clock.now(),
            lab_tiers=state.settings.lab.tiers,
        )
    except SizzleError as exc:
        return await _refused(request, state, user, choice, exc)
    if not launched.replayed:
        state.jobs.poke()
    carried = carried_chat(chat)
    opens = f"?{urlencode({'chat': carried})}" if carried else ""
    return RedirectResponse(f"/sessions/{launched.session.id}{opens}", status_code=303)


def carried_chat(chat: str | None) -> str | None:
    """The id of the saved chat a launch carries on (services/carry_on.py), if it looks like
    one: its page checks whose it is."""
    return chat if chat and CHAT_ID.fullmatch(chat) else None


@router.post("/launch/queue", dependencies=[CsrfChecked])
async def queue_launch(
    request: Request,
    state: StateDep,
    user: SignedIn,
    tier: Annotated[str, Form(max_length=32)],
    model: Annotated[str, Form(max_length=200)] = "",
    max_minutes: Annotated[str, Form(max_length=32)] = "",
    spend_cap: Annotated[str, Form(max_length=32)] = "",
    idle: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Tell me when it's free: the confirm step's choice, kept to be launched when a GPU of
    its tier is free; then the sessions page, where it waits in line. A refusal (too many
    waiting, say) is explained on the confirm step."""
    choice = read_choice(
        tier,
        model or "none",
        max_minutes,
        spend_cap,
        idle or None,
        default_idle_minutes=state.settings.idle_minutes,
    )
    if choice.tier is None:
        return RedirectResponse(f"/launch?{choice.query(step='tier')}", status_code=303)
    if choice.problems:
        return RedirectResponse(f"/launch?{choice.query(step='options')}", status_code=303)
    try:
        chosen = (
            model_library.choose_session_model(choice.model, choice.tier) if choice.model else None
        )
        await launch_queue.queue_launch(
            state.db,
            user_id=user.id,
            tier_name=choice.tier.name,
            model=chosen.ollama_tag if chosen else None,
            max_minutes=choice.max_minutes,
            spend_cap_micros=choice.spend_cap_micros,
            idle_minutes=choice.idle_minutes,
            now=state.clock.now(),
            max_wait=state.settings.queue_max_wait,
            max_waiting=state.settings.queue_max_per_user,
            lab_tiers=state.settings.lab.tiers,
        )
    except SizzleError as exc:
        return await _refused(request, state, user, choice, exc)
    state.jobs.poke_queue()
    return RedirectResponse("/sessions?queued=1#waiting", status_code=303)


async def _refused(
    request: Request, state: AppState, user: User, choice: LaunchChoice, exc: SizzleError
) -> Response:
    """The confirm step again, saying why the launch (or the wait) was refused and what to do
    next."""
    context = await _confirm_context(state, user, choice)
    if exc.code == "too_many_sessions":
        async with state.db.read() as tx:
            context["running"] = await sessions.live_session_ids(tx, user_id=user.id)
    return render(
        request,
        "sessions/launch.html",
        user=user,
        status_code=exc.status_code,
        steps=WIZARD_STEPS,
        step="confirm",
        choice=choice,
        refusal=exc,
        warnings=[],
        **context,
    )
