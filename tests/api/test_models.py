"""The model library API: search, categories, and fit per tier."""

from __future__ import annotations

import httpx


async def test_the_library_lists_at_least_fifty_models_paged(client: httpx.AsyncClient) -> None:
    page = (await client.get("/api/v1/models", params={"limit": 10})).json()
    assert page["total"] >= 50
    assert len(page["items"]) == 10


async def test_search_and_category_filter(client: httpx.AsyncClient) -> None:
    coders = (await client.get("/api/v1/models", params={"category": "code"})).json()
    assert coders["total"] > 0
    assert all("code" in m["categories"] for m in coders["items"])
    found = (await client.get("/api/v1/models", params={"search": "Llama 3.1"})).json()
    assert {m["slug"] for m in found["items"]} >= {"llama3.1-8b", "llama3.1-70b"}


async def test_a_small_model_says_a_laptop_may_do(client: httpx.AsyncClient) -> None:
    tiny = (await client.get("/api/v1/models/llama3.2-1b")).json()
    assert tiny["runs_on_a_laptop"] is True
    assert "laptop" in tiny["hint"]


async def test_detail_gives_each_build_its_tiers(client: httpx.AsyncClient) -> None:
    model = (await client.get("/api/v1/models/llama3.1-70b")).json()
    assert model["best_tier"] == "beast"
    assert model["context_for_estimate"] == 8192
    for build in model["builds"]:
        assert set(build["fits"]) == {"starter", "pro", "beast", "ultra"}
        assert build["fits"]["starter"] is False


async def test_a_longer_context_needs_more_memory(client: httpx.AsyncClient) -> None:
    short = (await client.get("/api/v1/models/llama3.1-8b", params={"context": 2048})).json()
    long = (await client.get("/api/v1/models/llama3.1-8b", params={"context": 131072})).json()
    assert long["builds"][0]["vram_gb"] > short["builds"][0]["vram_gb"]


async def test_unknown_model_and_bad_context_are_clear_errors(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/models/no-such-model")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    bad = await client.get("/api/v1/models/llama3.1-8b", params={"context": 0})
    assert bad.status_code == 422


async def test_recommend_reads_the_task_and_gives_one_pick_per_tier(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/models/recommend", params={"task": "write Python code"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["categories"][0] == "code"
    picks = body["items"]
    assert 1 <= len(picks) <= 3
    prices = [float(p["price_per_minute_usd"]) for p in picks]
    assert prices == sorted(prices) and len({p["tier"] for p in picks}) == len(picks)
    for pick in picks:
        assert "code" in pick["model"]["categories"]
        assert pick["reasons"] and any(pick["tier"] in reason for reason in pick["reasons"])
        detail = (await client.get(f"/api/v1/models/{pick['model']['slug']}")).json()
        assert detail["best_tier"] == pick["tier"]  # the pick's tier is its cheapest


async def test_recommend_within_a_tier_ranks_models_that_fit_it(
    client: httpx.AsyncClient,
) -> None:
    body = (
        await client.get(
            "/api/v1/models/recommend", params={"task": "solve math", "tier": "starter", "limit": 5}
        )
    ).json()
    assert body["categories"] == ["reasoning"]
    assert len(body["items"]) == 5
    for pick in body["items"]:
        assert pick["tier"] == "starter"
        detail = (await client.get(f"/api/v1/models/{pick['model']['slug']}")).json()
        assert any(build["fits"]["starter"] for build in detail["builds"])
    years = [pick["model"]["released"] for pick in body["items"]]
    assert years == sorted(years, reverse=True)


async def test_recommend_refuses_bad_input(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/models/recommend")).status_code == 422
    unknown_tier = await client.get(
        "/api/v1/models/recommend", params={"task": "chat", "tier": "gigantic"}
    )
    assert unknown_tier.status_code == 422
    assert unknown_tier.json()["error"]["code"] == "unknown_tier"


async def test_a_task_that_names_nothing_known_gets_chat_models(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/models/recommend", params={"task": "hmm"})).json()
    assert body["categories"] == ["chat"]
    assert all("chat" in pick["model"]["categories"] for pick in body["items"])
