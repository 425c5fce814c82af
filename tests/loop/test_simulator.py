"""Unit tests of the user simulator: determinism, behaviour, ground truth, and that the
ground truth never leaves it."""

from __future__ import annotations

import json
import random
from collections import Counter

import httpx
import pytest

from loop.client import ApiClient, ApiFeedback
from loop.config import ClickModelConfig, SimulatorConfig
from loop.metrics import Record, mean_interval, summarize
from loop.population import (
    cascade,
    click_params,
    draw_click,
    population,
    reference_user,
)
from loop.simulator import Judgement, Reaction, Shown, Simulator
from retrieval.context import DeviceContext
from tests.loop.conftest import hashing_encode


def _shown_for(sim: Simulator, user: int, index: int) -> list[Shown]:
    """A plausible list: the intended tool's example first for tool intents, then noise."""
    turn = sim.turn(user, index)
    rng = random.Random(index)
    first = Shown(1, turn.intent.phrasings[0], turn.intent.tool_id)
    others = [Shown(k, rng.choice(sim.intents.tools).examples[0], None) for k in (2, 3, 4)]
    return [first, *others]


def test_turns_and_reactions_are_deterministic_for_a_seed(tools: list) -> None:
    a = Simulator(SimulatorConfig(seed=3, users=10), tools=tools, encode=hashing_encode)
    b = Simulator(SimulatorConfig(seed=3, users=10), tools=tools, encode=hashing_encode)
    c = Simulator(SimulatorConfig(seed=4, users=10), tools=tools, encode=hashing_encode)
    for user, index in [(0, 0), (3, 5), (9, 2), (3, 5)]:
        ta, tb = a.turn(user, index), b.turn(user, index)
        assert ta == tb
        shown = _shown_for(a, user, index)
        assert a.react(ta, shown, a.judge(ta, shown)) == b.react(tb, shown, b.judge(tb, shown))
    assert [a.turn(u, 0).request for u in range(10)] != [c.turn(u, 0).request for u in range(10)]
    assert [u.activity for u in a.users] == [u.activity for u in b.users]


def test_turns_look_like_real_requests(sim: Simulator) -> None:
    for user in range(5):
        for index in range(7):
            turn = sim.turn(user, index)
            request = turn.request
            assert request.query.strip()
            DeviceContext.parse(request.context)  # the API's own validation passes
            assert request.n == sim.config.n_suggestions
            session_start = index - index % sim.config.session_turns
            assert request.recent == tuple(
                sim.turn(user, i).request.query for i in range(session_start, index)
            )
            assert request.session_id.endswith(f"-s{index // sim.config.session_turns}")
    examples = {e for t in sim.intents.tools for e in t.examples}
    tool_queries = sum(
        sim.turn(u, i).request.query in examples for u in range(20) for i in range(5)
    )
    assert 60 <= tool_queries <= 95  # need_query_share = 0.2


def test_hidden_intents_follow_the_documented_mixture(sim: Simulator) -> None:
    turns = [sim.turn(u, i) for u in range(40) for i in range(25)]
    kinds = Counter(t.intent.kind for t in turns)
    assert 0.70 <= kinds["tool"] / len(turns) <= 0.80
    ids = {t.id: t for t in sim.intents.tools}
    same_category = 0
    for turn in turns:
        if turn.intent.kind != "tool":
            continue
        query_tools = [t for t in sim.intents.tools if turn.request.query in t.examples]
        assert turn.intent.tool_id not in {t.id for t in query_tools if len(query_tools) == 1}
        if query_tools and ids[turn.intent.key].category == query_tools[0].category:
            same_category += 1
    # Same-category moves: the uniform component alone gives 0.20 x 0.8 (turns whose query
    # is a tool example) = 0.16 of tool intents, the related tools add more. The share's
    # mean is 0.30 (0.294-0.310 over seeds 7-9 x 200 users, on this catalog and the one
    # before session 12's examples), so "> 0.30" held or failed by the sample (0.2996 here
    # after the catalog grew); 0.25 is that mean less three standard deviations of this
    # 750-intent sample, still well above the uniform component's floor.
    assert same_category > 0.25 * kinds["tool"]


def test_low_battery_context_makes_battery_intents_likelier(sim: Simulator) -> None:
    rng = random.Random(0)
    low = {"battery_low": 1.0}
    about = ("media",)

    def battery_share(hints: dict[str, float]) -> float:
        draws = [sim.intents.intent(about, hints, rng) for _ in range(1500)]
        tools = [d for d in draws if d.kind == "tool"]
        return sum(d.key.startswith("battery.") for d in tools) / len(tools)

    assert battery_share(low) > 3 * battery_share({}) + 0.05


def test_activity_distribution_and_click_curves() -> None:
    cfg = ClickModelConfig()
    users = population(0, 3000, cfg)
    shares = Counter(u.cohort for u in users)
    assert abs(shares["rare"] / 3000 - cfg.rare_share) < 0.03
    assert abs(shares["heavy"] / 3000 - cfg.heavy_share) < 0.03
    assert all(cfg.rare_max <= u.activity < cfg.heavy_min for u in users if u.cohort == "regular")
    rare, heavy = click_params(0.05, cfg), click_params(0.95, cfg)
    # heavy clickers click even useless suggestions; rare clickers almost never do …
    assert heavy.attract(0.0) > 0.3 > 0.01 > rare.attract(0.0)
    # … but rare clickers do click very useful ones, and utility matters more to them
    assert rare.attract(1.0) > 0.6
    assert rare.attract(1.0) / rare.attract(0.3) > 20 > heavy.attract(1.0) / heavy.attract(0.3)
    for params in (rare, heavy, reference_user(cfg)):
        curve = [params.attract(u / 10) for u in range(11)]
        assert curve == sorted(curve)


def test_position_bias_cascade_matches_simulated_clicks() -> None:
    cfg = ClickModelConfig()
    params = click_params(0.5, cfg)
    utilities = [0.7, 0.7, 0.7, 0.7]
    probs = cascade(utilities, params, cfg.eta)
    assert probs == sorted(probs, reverse=True) and sum(probs) < 1
    rng = random.Random(1)
    counts = Counter(draw_click(utilities, params, cfg.eta, rng) for _ in range(40_000))
    for k, p in enumerate(probs, start=1):
        assert abs(counts[k] / 40_000 - p) < 0.01


def test_tool_matches_are_worth_more(sim: Simulator) -> None:
    assert sim.utility(0.9, True) == 1.0
    assert sim.utility(0.9, False) == pytest.approx(1 / (1 + sim.config.utility.tool_bonus))
    assert sim.utility(0.5, True) > sim.utility(0.9, False) > sim.utility(0.3, False)
    assert sim.utility(-0.2, False) == 0.0


def test_judgement_and_execution_after_tool_clicks(sim: Simulator) -> None:
    executes = successes = clicks = 0
    for user in range(sim.config.users):
        for index in range(30):
            turn = sim.turn(user, index)
            if turn.intent.kind != "tool":
                continue
            shown = _shown_for(sim, user, index)
            judgement = sim.judge(turn, shown)
            assert judgement.match[0] and not any(judgement.match[1:])
            assert judgement.relevance[0] == pytest.approx(1.0, abs=1e-5)
            assert judgement.utility[0] == max(judgement.utility)
            assert 0 < judgement.ref_right_tool <= judgement.ref_ctr < 1
            reaction = sim.react(turn, shown, judgement)
            if reaction.position == 1:
                clicks += 1
                assert [e.type for e in reaction.events] == ["click", "execute"]
                executes += 1
                successes += bool(reaction.events[1].success)
            elif reaction.clicked:
                assert [e.type for e in reaction.events] == ["click"]  # no tool: no execute
    assert clicks > 50
    assert abs(successes / executes - sim.config.utility.exec_success_match) < 0.1


def test_ground_truth_never_reaches_the_system(sim: Simulator) -> None:
    """Everything sent — recommend bodies and feedback — carries no hidden field."""
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append({"path": request.url.path, **body})
        if request.url.path == "/v1/recommend":
            return httpx.Response(200, json={
                "request_id": f"r{len(sent)}", "model_version": "v1",
                "suggestions": [{"position": 1, "text": "turn on wifi",
                                 "tool_id": "connectivity.wifi.on"},
                                {"position": 2, "text": "what's the weather", "tool_id": None}],
            })
        return httpx.Response(202, json={"accepted": True})

    client = ApiClient("http://api", transport=httpx.MockTransport(handler))
    feedback = ApiFeedback(client)
    hidden_values: set[str] = set()
    for user in range(sim.config.users):
        for index in range(6):
            turn = sim.turn(user, index)
            served = client.recommend(turn.request)
            judgement = sim.judge(turn, served.shown)
            reaction = sim.react(turn, served.shown, judgement)
            feedback.send(turn.request.raw_user_id, served.request_id, reaction.events)
            hidden_values |= {turn.intent.key, turn.user.cohort, f"{turn.user.activity:.6f}"}
    allowed = {
        "/v1/recommend": {"path", "user_id", "session_id", "query", "response", "recent_queries",
                          "context", "n"},
        "/v1/feedback": {"path", "user_id", "request_id", "type", "position", "success"},
    }
    assert any(m["path"] == "/v1/feedback" for m in sent)
    for message in sent:
        assert set(message) <= allowed[message["path"]], message
        text = json.dumps(message)
        keys = " ".join(_keys(message))
        for word in ("intent", "utility", "cohort", "activity", "relevance", "hidden"):
            assert word not in keys
        for value in hidden_values:
            assert f'"{value}"' not in text and f"-{value}" not in text
    # user ids are neutral: one format for every cohort, no activity in them
    ids = {u.cohort: u.raw_id for u in sim.users}
    assert {len(i) for i in ids.values()} == {len("sim-") + 12}


def _keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in (k, *_keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_summarize_hand_computed_case(sim: Simulator) -> None:
    turn_a, turn_b = sim.turn(0, 0), sim.turn(1, 0)
    shown = (Shown(1, "a", "x.tool"), Shown(2, "b b", None))
    records = [
        Record(0, turn_a, "r1", "v1", shown,
               Judgement((0.5, 0.1), (0.6, 0.0), (True, False), (0.4, 0.1)),
               Reaction(1)),
        Record(0, turn_b, "r2", "v1", shown,
               Judgement((0.3, 0.2), (0.2, 0.1), (False, False), (0.2, 0.0)),
               Reaction(None)),
    ]
    s = summarize(records)
    assert s["requests"] == 2 and s["suggestions"] == 4 and s["clicks"] == 1
    assert s["obs_ctr"] == 0.5 and s["obs_tool_click_share"] == 1.0
    assert s["gt_ctr"] == pytest.approx((0.5 + 0.2) / 2)
    assert s["gt_right_tool_share"] == pytest.approx(0.4 / 0.7)
    assert s["relevance"] == pytest.approx((0.5 + 0.1 + 0.3 + 0.2) / 4)
    assert s["tool_query_share"] == 0.5 and s["mean_words"] == 1.5


def test_mean_interval_student_t() -> None:
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 * 1.0 / 3**0.5, rel=1e-5)
    assert mean_interval([5.0]) == (5.0, 5.0, 5.0)


def _fake_api(fail_every: int = 0) -> tuple[httpx.MockTransport, list[dict]]:
    """A stand-in API: echoes two suggestions, the first invoking a tool; every
    `fail_every`-th recommend call answers 503 once (retried by the client)."""
    sent: list[dict] = []
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append({"path": request.url.path, **body})
        if request.url.path == "/v1/feedback":
            return httpx.Response(202, json={"status": "accepted", "event_id": "e"})
        calls["n"] += 1
        if fail_every and calls["n"] % fail_every == 0:
            return httpx.Response(503, json={"error": "overloaded"})
        rid = f"{body['user_id']}:{body['query']}:{len(body['recent_queries'])}"
        return httpx.Response(200, json={
            "request_id": rid, "model_version": "v1",
            "suggestions": [{"position": 1, "text": "turn on battery saver",
                             "tool_id": "battery.saver.on"},
                            {"position": 2, "text": body["query"], "tool_id": None}],
            "timing": {"total_ms": 1.0},
        })

    return httpx.MockTransport(handler), sent


def test_traffic_runner_is_deterministic_whatever_the_concurrency(sim: Simulator) -> None:
    from loop.traffic import Progress, TrafficRunner

    outcomes = []
    for concurrency in (1, 4):
        transport, sent = _fake_api(fail_every=7)
        client = ApiClient("http://api", transport=transport, retries=2)
        lines: list[str] = []
        runner = TrafficRunner(sim, client, ApiFeedback(client), concurrency=concurrency)
        result = runner.run(range(10), 3, first_index=2,
                            progress=Progress(30, every_s=0.0, emit=lines.append))
        assert len(result.records) == 30 and not result.failures
        assert "ETA" in lines[-1] and "30/30 requests" in lines[-1]
        clicks = sum(r.reaction.clicked for r in result.records)
        assert sum(m["path"] == "/v1/feedback" and m["type"] == "click" for m in sent) == clicks
        outcomes.append([(r.request_id, r.reaction, r.judgement.ref_ctr)
                         for r in result.records])
    assert outcomes[0] == outcomes[1]


def test_tool_intents_favour_the_tools_related_to_the_turn(sim: Simulator) -> None:
    """The `related` component: most tool intents are among the ≈8 tools nearest the turn
    (text + context), the nearest likeliest — what a grounded generator can meet."""
    from loop.intents import RELATED_K, W_RELATED

    hits = first = tools = 0
    for user in range(40):
        for index in range(10):
            turn = sim.turn(user, index)
            if turn.intent.kind != "tool":
                continue
            request = turn.request
            about = sim._opening(user, index)[2]
            hints = sim._hints(dict(request.context))
            text = f"{request.query} {request.response}".strip()
            dist = sim.intents.tool_distribution(about, hints, text)
            assert sum(dist.values()) == pytest.approx(1.0)
            related = [t.id for t, _ in sim.intents.related(text, about, hints)]
            assert len(related) == RELATED_K and not set(related) & set(about)
            tools += 1
            hits += turn.intent.key in related
            first += turn.intent.key == related[0]
    assert hits / tools > W_RELATED - 0.1  # the related share, plus overlap of the others
    assert first / tools > 2 * (hits - first) / tools / (RELATED_K - 1)  # nearest likeliest
