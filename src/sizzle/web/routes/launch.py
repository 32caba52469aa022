"""The launch wizard: tier, model, limits, confirm; only the last step changes anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sizzle.api.deps import StateDep
from sizzle.api.schemas import usd
from sizzle.catalog import CATEGORIES
from sizzle.domain.money import usd_to_micros
from sizzle.domain.tiers import PLANS, TIERS, Tier
from sizzle.errors import SizzleError
from sizzle.services import ledger, model_library, sessions
from sizzle.web.deps import CsrfChecked, SignedIn
from sizzle.web.render import render
from sizzle.web.routes.public import tier_cards

router = APIRouter(include_in_schema=False)


WIZARD_STEPS = (
    ("tier", "Power"),
    ("model", "Model"),
    ("options", "Limits"),
    ("confirm", "Confirm"),
)
MODELS_SHOWN = 24


@dataclass(frozen=True)
class LaunchChoice:
    """What the wizard has gathered so far, as query parameters carry it from step to step."""

    tier: Tier | None
    model: str | None  # a library slug, an Ollama tag, or None for no model
    max_minutes: int | None
    spend_cap_micros: int | None

    @property
    def effective_max_minutes(self) -> int | None:
        """The time limit, tightened by the spending cap at the tier's price."""
        limits = [m for m in (self.max_minutes,) if m]
        if self.spend_cap_micros and self.tier:
            limits.append(max(self.spend_cap_micros // self.tier.price_micros_per_minute, 1))
        return min(limits) if limits else None

    def query(self, **override: object) -> str:
        values: dict[str, object] = {
            "tier": self.tier.name if self.tier else None,
            "model": self.model,
            "max_minutes": self.max_minutes,
            "spend_cap": usd(self.spend_cap_micros) if self.spend_cap_micros else None,
        }
        values.update(override)
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def _read_choice(
    tier: str | None, model: str | None, max_minutes: str | None, spend_cap: str | None
) -> tuple[LaunchChoice, list[str]]:
    """The choice the query carries, and what is wrong with it in plain words."""
    problems: list[str] = []
    chosen_tier = TIERS.get(tier or "")
    if tier and chosen_tier is None:
        problems.append(f"There is no tier called {tier!r}.")
    minutes: int | None = None
    if max_minutes:
        if max_minutes.isdecimal() and 1 <= int(max_minutes) <= sessions.MAX_MINUTES_LIMIT:
            minutes = int(max_minutes)
        else:
            problems.append(
                f"A time limit is a whole number of minutes from 1 to {sessions.MAX_MINUTES_LIMIT}."
            )
    cap: int | None = None
    if spend_cap:
        try:
            cap = usd_to_micros(spend_cap.strip().lstrip("$"))
        except (ValueError, ArithmeticError):
            cap = None
        if cap is None or cap <= 0 or cap > usd_to_micros("100000"):
            problems.append("A spending cap is an amount in dollars, like 5 or 2.50.")
            cap = None
    return LaunchChoice(chosen_tier, (model or "").strip() or None, minutes, cap), problems


def _model_rows(
    tier: Tier, search: str | None, category: str | None
) -> tuple[list[dict[str, object]], int]:
    found, total = model_library.search_models(
        search=search, category=category, limit=MODELS_SHOWN, offset=0
    )
    rows = []
    for model in found:
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


@router.get("/launch", response_class=HTMLResponse)
async def launch_wizard(
    request: Request,
    state: StateDep,
    user: SignedIn,
    step: Annotated[str, Query(max_length=16)] = "tier",
    tier: Annotated[str | None, Query(max_length=32)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    max_minutes: Annotated[str | None, Query(max_length=12)] = None,
    spend_cap: Annotated[str | None, Query(max_length=20)] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Four steps, each a GET form that carries the earlier answers: tier, model, limits,
    confirm. Only the confirm step's POST changes anything."""
    choice, problems = _read_choice(tier, model, max_minutes, spend_cap)
    steps = [name for name, _ in WIZARD_STEPS]
    if step not in steps or (step != "tier" and choice.tier is None):
        step = "tier"
    context: dict[str, object] = {
        "steps": WIZARD_STEPS,
        "step": step,
        "choice": choice,
        "problems": problems,
    }
    if step == "tier":
        plan = PLANS[user.plan]
        cards = await tier_cards(state)
        for card in cards:
            card["in_plan"] = card["name"] in plan.allowed_tiers
        context.update(tiers=cards, plan=plan.name)
    elif step == "model":
        assert choice.tier is not None  # noqa: S101 - checked above
        rows, total = _model_rows(choice.tier, q, category)
        context.update(
            models=rows, total=total, q=q or "", category=category or "", categories=CATEGORIES
        )
    elif step in ("options", "confirm"):
        assert choice.tier is not None  # noqa: S101 - checked above
        warnings: list[str] = []
        if choice.model:
            try:
                warnings = list(
                    model_library.choose_session_model(choice.model, choice.tier).warnings
                )
            except SizzleError as exc:
                context.update(step="model", problems=[exc.message])
                rows, total = _model_rows(choice.tier, q, category)
                context.update(models=rows, total=total, q="", category="", categories=CATEGORIES)
                return render(
                    request, "sessions/launch.html", user=user, status_code=422, **context
                )
        async with state.db.read() as tx:
            money = await ledger.balances(tx, user.id)
        affordable = money.minutes_at(
            choice.tier.price_micros_per_minute,
            lab_covered=state.settings.lab.covers(choice.tier.name),
        )
        limit = choice.effective_max_minutes
        context.update(
            warnings=warnings,
            money=money,
            affordable=affordable,
            lasts=min(affordable, limit) if limit else affordable,
            limit=limit,
        )
    return render(
        request,
        "sessions/launch.html",
        user=user,
        status_code=422 if problems else 200,
        **context,
    )


@router.post("/launch", dependencies=[CsrfChecked])
async def launch(
    request: Request,
    state: StateDep,
    user: SignedIn,
    tier: Annotated[str, Form(max_length=32)],
    model: Annotated[str, Form(max_length=200)] = "",
    max_minutes: Annotated[str, Form(max_length=12)] = "",
    spend_cap: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Create the session and go to its live page; a refusal is explained on the confirm step."""
    choice, problems = _read_choice(tier, model, max_minutes, spend_cap)
    if problems or choice.tier is None:
        return RedirectResponse(f"/launch?{choice.query(step='tier')}", status_code=303)
    try:
        chosen = (
            model_library.choose_session_model(choice.model, choice.tier) if choice.model else None
        )
        session = await sessions.create_session(
            state.db,
            state.orchestrator,
            user_id=user.id,
            tier_name=choice.tier.name,
            model=chosen.ollama_tag if chosen else None,
            max_minutes=choice.effective_max_minutes,
            now=state.clock.now(),
            lab_tiers=state.settings.lab.tiers,
        )
    except SizzleError as exc:
        async with state.db.read() as tx:
            money = await ledger.balances(tx, user.id)
        affordable = money.minutes_at(
            choice.tier.price_micros_per_minute,
            lab_covered=state.settings.lab.covers(choice.tier.name),
        )
        return render(
            request,
            "sessions/launch.html",
            user=user,
            status_code=exc.status_code,
            steps=WIZARD_STEPS,
            step="confirm",
            choice=choice,
            problems=[],
            refusal=exc,
            warnings=[],
            money=money,
            affordable=affordable,
            lasts=affordable,
            limit=choice.effective_max_minutes,
        )
    state.jobs.poke()
    return RedirectResponse(f"/sessions/{session.id}", status_code=303)
