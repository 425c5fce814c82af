"""Synthetic rows for benchmarks and tests that need data without running the pipeline:
`synthetic_samples` writes Sample-contract rows with a learnable signal (tool suggestions
clicked more often). Not in a production package: production never builds samples by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contracts.events import SAMPLE_SCHEMA
from contracts.models import BASE_VERSION

_EVAL_TOOLS = (
    ("battery_saver", "battery saver", "turn on battery saver"),
    ("bluetooth", "bluetooth", "turn off bluetooth"),
    ("alarm", "alarm", "set an alarm for 7"),
    ("wifi", "wifi settings", "open wifi settings"),
    ("dark_mode", "dark mode", "turn on dark mode"),
    ("flashlight", "flashlight", "turn on the flashlight"),
    ("dnd", "do not disturb", "turn on do not disturb"),
    ("timer", "timer", "start a timer for 10 minutes"),
)
_PLAIN = (
    "what is the weather tomorrow", "tell me a joke", "who won the game",
    "how far is the moon", "recommend a podcast", "what time is it in tokyo",
)


def synthetic_samples(
    n: int,
    *,
    seed: int = 0,
    start_ts: int = 1_767_225_600_000,
    model_version: str = BASE_VERSION,
    tool_click_rate: float = 0.45,
    plain_click_rate: float = 0.08,
) -> list[dict[str, Any]]:
    """`n` rows of the Sample contract (`contracts.events.Sample`) for benchmarks and tests.

    Real GQR prompts (`generator.prompt`); tool-invoking suggestions are clicked more often
    than plain ones, so a trained model has a signal to find. Deterministic for `seed`.
    """
    from generator.prompt import (
        TEMPLATE_VERSION,
        PromptInputs,
        PromptTool,
        format_completion,
        render_prompt,
        sample_prompt,
    )

    rng = np.random.default_rng(seed)
    tools = [PromptTool(t, name, example=ex) for t, name, ex in _EVAL_TOOLS]
    rows: list[dict[str, Any]] = []
    request = 0
    while len(rows) < n:
        request += 1
        picked = rng.choice(len(tools), size=3, replace=False)
        query = tools[picked[0]].example
        shown = [(tools[i].example, tools[i].tool_id) for i in picked[1:]]
        shown.append((str(rng.choice(_PLAIN)), None))
        order = rng.permutation(len(shown))
        shown = [shown[i] for i in order]
        inputs = PromptInputs(query=query, response=f"Okay, I will {query}.",
                              tools=tuple(tools[i] for i in picked[1:]))
        rendered = render_prompt(inputs, n=len(shown))
        ts = start_ts + request * 1_000
        for position, (text, tool_id) in enumerate(shown, start=1):
            rate = tool_click_rate if tool_id else plain_click_rate
            clicked = bool(rng.random() < rate)
            rows.append(_synthetic_row(
                request=f"{seed}-{request}", seed=seed, position=position, n_shown=len(shown),
                ts=ts, model_version=model_version, template_version=TEMPLATE_VERSION,
                prompt=sample_prompt(rendered, [t for t, _ in shown[: position - 1]]),
                completion=format_completion(text), clicked=clicked, tool_id=tool_id,
                rng=rng,
            ))
    return rows[:n]


def _synthetic_row(*, request: str, seed: int, position: int, n_shown: int, ts: int,
                   model_version: str, template_version: str, prompt: str, completion: str,
                   clicked: bool, tool_id: str | None, rng: np.random.Generator) -> dict[str, Any]:
    w_activity = float(np.round(rng.uniform(0.5, 2.0), 3))
    w_tool = 2.0 if clicked and tool_id else 1.0
    return {
        "schema": SAMPLE_SCHEMA,
        "sample_id": f"{request}:{position}",
        "request_id": request,
        "event_id": f"imp-{request}",
        "user_id": f"u{seed}-{int(rng.integers(0, 50))}",
        "session_id": f"s-{request}",
        "impression_ts": ts,
        "closed_ts": ts + 60_000,
        "model_version": model_version,
        "template_version": template_version,
        "prompt": prompt,
        "completion": completion,
        "position": position,
        "n_shown": n_shown,
        "clicked": clicked,
        "executed": bool(clicked and tool_id and rng.random() < 0.5),
        "explored": False,
        "tool_id": tool_id,
        "is_tool_query": tool_id is not None,
        "user_impressions": 20.0,
        "user_clicks": 4.0,
        "user_ctr": 0.2,
        "global_ctr": 0.2,
        "w_activity": w_activity,
        "w_tool": w_tool,
        "w_position": 1.0,
        "weight": w_activity * w_tool,
    }
