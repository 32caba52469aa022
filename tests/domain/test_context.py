"""Fitting a chat's history into a model's context: the oldest turns go first."""

from __future__ import annotations

from sizzle.domain.context import fit_history, message_tokens


def turns(count: int, size: int) -> list[dict[str, str]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}:" + "x" * size}
        for i in range(count)
    ]


def test_a_short_chat_goes_whole() -> None:
    history = turns(4, 30)
    assert fit_history(history, context_tokens=8192) == (history, 0)


def test_the_oldest_turns_go_first_and_the_system_prompt_and_question_stay() -> None:
    system = {"role": "system", "content": "Be brief."}
    history = [system, *turns(9, 3000)]  # about 1,000 tokens each
    kept, dropped = fit_history(history, context_tokens=4096, answer_tokens=500)
    assert kept[0] == system and kept[-1] == history[-1]
    assert dropped == len(history) - len(kept) > 0
    assert kept[1:] == history[1 + dropped :]  # the newest ones, in order
    assert sum(message_tokens(m) for m in kept) <= 4096 - 500


def test_a_single_question_too_long_is_still_sent() -> None:
    history = turns(1, 100_000)
    assert fit_history(history, context_tokens=2048) == (history, 0)
