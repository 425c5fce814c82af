"""Issue 15: the worker survives hostile input the event contract allows (real broker).

Each test first sends the probe as the issue wrote it, then good traffic, and asserts that
the worker is alive, that the good samples are right and that every hostile event is in the
DLQ with its reason. Each prints a `PROBE …` line (tried / landed / dead-lettered / lost)
for the closing note (`pytest -s`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import streams.app as worker_app
from contracts.events import Impression
from streams.config import StreamsConfig
from tests.streams.conftest import Worker, read_topic, samples_by_id, stop_all, toolrec_env
from tests.streams.events import feedback, impression
from tests.streams.hostile import (
    FAR_FUTURE_MS,
    YEAR_2100_MS,
    changelog_sizes,
    dead_letters,
    header,
    now_ms,
    partition_of,
    probe_line,
    raw_feedback,
    reasons,
    users_on_one_partition,
)
from tests.streams.test_worker import produce
from tests.streams.traffic import Traffic
from toolrec.kafka import KafkaConfig

CFG = StreamsConfig()  # the bounds under test are the defaults
# Long enough that the hostile events reach a wave's windows while they are open, even on a
# loaded machine.
MIXED_WINDOW = {"attribution_window_s": 10, "allowed_lateness_s": 1}
DAY_MS = 86_400_000


def wait_samples(kafka: KafkaConfig, ids: list[str], timeout_s: float = 90) -> dict[str, dict]:
    want = set(ids)
    messages = read_topic(
        kafka, kafka.topics.samples, timeout_s=timeout_s,
        until=lambda m: want <= {x.value.split(b'"sample_id":"')[1].split(b'"')[0].decode()
                                 for x in m},
    )
    return samples_by_id(messages)


def good_request(kafka: KafkaConfig, user: str, rid: str, *, click: int | None) -> None:
    """One fresh impression (ts = now) and, optionally, a click on it."""
    now = now_ms()
    events = [(kafka.topics.impressions, user.encode(),
               impression(rid, user_id=user, ts=now).to_json_bytes())]
    if click is not None:
        events.append((kafka.topics.feedback, user.encode(),
                       feedback(rid, click, user_id=user, ts=now + 5).to_json_bytes()))
    produce(kafka, events)


def assert_labels(samples: dict[str, dict], rid: str, clicked: int | None) -> None:
    got = [samples[f"{rid}:{k}"]["clicked"] for k in (1, 2, 3)]
    assert got == [k == clicked for k in (1, 2, 3)], (rid, got)


def test_flood_of_orphan_far_future_feedback_leaves_the_worker_alive_and_bounded(
    kafka: KafkaConfig, start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """Failure 1: ≈3,300 far-future clicks for unknown requests (and 2,000 plausible ones)."""
    app_id = f"streams-{uuid.uuid4().hex[:8]}"
    worker = start_worker(app_id=app_id)
    fb, now = kafka.topics.feedback, now_ms()
    far = [(fb, b"flood-user", raw_feedback("flood-user", f"flood-{i}", FAR_FUTURE_MS))
           for i in range(3300)]
    near = [(fb, b"flood-near", raw_feedback("flood-near", f"near-{i}", now))
            for i in range(2000)]
    started = time.monotonic()
    produce(kafka, far + near)
    good_request(kafka, "p_alice", "after-flood", click=2)

    samples = wait_samples(kafka, ["after-flood:1", "after-flood:2", "after-flood:3"])
    assert_labels(samples, "after-flood", clicked=2)
    held = CFG.max_orphans_per_user
    dead = dead_letters(kafka, at_least=len(far) + len(near), timeout_s=120)
    assert worker.proc.poll() is None, worker.log()[-3000:]
    assert "MessageSizeTooLarge" not in worker.log()
    assert reasons(dead) == {
        "future_timestamp": len(far),
        "orphan_overflow": len(near) - held,
        "unknown_impression": held,  # the held ones, once their window passed
    }
    assert {header(m, "field") for m in dead if header(m, "reason") == "future_timestamp"} == {
        "ts"}
    # The flood's state: nothing for the far-future user, a small bounded record for the
    # other (written once per held event and once at expiry, never per rejected event).
    assert changelog_sizes(kafka, app_id, "u:flood-user") == []
    sizes = changelog_sizes(kafka, app_id, "u:flood-near")
    assert 0 < len(sizes) <= held + 2 and max(sizes) <= CFG.max_orphan_bytes_per_user + 4096
    print(f"flood handled in {time.monotonic() - started:.1f} s; flood-near state records "
          f"{len(sizes)}, largest {max(sizes)} B, total {sum(sizes)} B")
    probe_line("flood (3,300 far-future + 2,000 plausible orphan clicks)",
               tried=len(far) + len(near), landed=0, dead_lettered=len(dead))


def test_one_skewed_clock_flips_no_label(
    kafka: KafkaConfig, start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """Failure 2: an impression in the year 2100 plus a click on it, and a single far-future
    click on a real impression, among four open impressions clicked afterwards."""
    start_worker()
    imp, fb, now = kafka.topics.impressions, kafka.topics.feedback, now_ms()
    user = b"p_bob"
    opened = [f"open-{k}" for k in range(4)]
    produce(kafka, [(imp, user, impression(r, user_id="p_bob", ts=now).to_json_bytes())
                    for r in opened])
    hostile = [
        (imp, user, impression("skewed", user_id="p_bob", ts=YEAR_2100_MS).to_json_bytes()),
        (fb, user, raw_feedback("p_bob", "skewed", YEAR_2100_MS + 1, position=1)),
        (fb, user, raw_feedback("p_bob", "open-0", YEAR_2100_MS, position=3)),  # via POST
    ]
    produce(kafka, hostile)
    time.sleep(0.5)  # the skewed events are processed before the real clicks
    produce(kafka, [(fb, user, feedback(r, 1, user_id="p_bob", ts=now + 50).to_json_bytes())
                    for r in opened])
    good_request(kafka, "p_bob", "later", click=1)

    ids = [f"{r}:{k}" for r in [*opened, "later"] for k in (1, 2, 3)]
    samples = wait_samples(kafka, ids)
    for rid in [*opened, "later"]:
        assert_labels(samples, rid, clicked=1)  # open-0:3 stays unclicked: its click was 2100
    assert not [s for s in samples if s.startswith("skewed")]
    dead = dead_letters(kafka, at_least=3)
    assert reasons(dead) == {"future_timestamp": 3}
    probe_line("skewed clock (2100 impression + its click + one 2100 click)",
               tried=len(hostile), landed=0, dead_lettered=len(dead))
    probe_line("skewed clock: good impressions around it", tried=len(ids),
               landed=len([i for i in ids if i in samples]), dead_lettered=0)


def test_two_users_sharing_a_request_id_lose_no_sample(
    kafka: KafkaConfig, start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """Failure 3: two users' impressions with the same request_id (same partition, so the
    same worker sees both), a click by the second user; no crash, nothing lost silently."""
    worker = start_worker()
    ann, ben = users_on_one_partition(kafka, "p_collide")
    imp, fb, now, rid = kafka.topics.impressions, kafka.topics.feedback, now_ms(), (
        "shared-request-id-1")
    produce(kafka, [
        (imp, ann.encode(), impression(rid, user_id=ann, ts=now).to_json_bytes()),
        (imp, ben.encode(), impression(rid, user_id=ben, ts=now).to_json_bytes()),
        (fb, ben.encode(), feedback(rid, 2, user_id=ben, ts=now + 5).to_json_bytes()),
    ])
    good_request(kafka, ben, "ben-own", click=3)  # the worker goes on for both users

    samples = wait_samples(kafka, [f"{rid}:1", "ben-own:1", "ben-own:2", "ben-own:3"])
    assert {samples[f"{rid}:{k}"]["user_id"] for k in (1, 2, 3)} == {ann}
    assert_labels(samples, rid, clicked=None)  # ben's click never reaches ann's samples
    assert_labels(samples, "ben-own", clicked=3)
    dead = dead_letters(kafka, at_least=2)
    assert reasons(dead) == {"request_id_collision": 1, "unknown_impression": 1}
    collision = next(m for m in dead if header(m, "reason") == "request_id_collision")
    assert collision.key == ben.encode() and b'"shared-request-id-1"' in collision.value
    assert worker.proc.poll() is None and "KeyError" not in worker.log()
    # ann's 3 samples landed; ben's impression (3 samples) and click are in the DLQ
    probe_line("request_id collision (2 impressions + 1 click)", tried=3, landed=1,
               dead_lettered=len(dead))


def spawn_faulty(kafka: KafkaConfig, tmp_path: Path, app_id: str, n: int,
                 **env_extra: str) -> Worker:
    """A real worker with an injected fault (`tests.streams.faulty_worker`)."""
    env = toolrec_env(kafka, tmp_path, "streams", app_id=app_id, attribution_window_s=4,
                      allowed_lateness_s=1, stats_interval_s=1, data_dir=tmp_path / f"f{n}",
                      protect_events=False)  # literal ids, as start_worker
    env |= env_extra
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.streams.faulty_worker", "streams", "worker",
         "--loglevel", "info"],
        env=env, stdout=(tmp_path / f"faulty-{n}.log").open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True, cwd=Path(__file__).resolve().parents[2],
    )
    return Worker(proc, tmp_path / f"faulty-{n}.log")


def test_an_event_that_raises_is_dead_lettered_and_the_worker_goes_on(
    kafka: KafkaConfig, tmp_path: Path,
) -> None:
    app_id = f"streams-{uuid.uuid4().hex[:8]}"
    workers = [spawn_faulty(kafka, tmp_path, app_id, 0)]
    try:
        good_request(kafka, "p_carol", "boom-1", click=1)  # the click raises
        good_request(kafka, "p_carol", "boomclose-1", click=None)  # its close raises
        good_request(kafka, "p_carol", "fine-1", click=2)
        samples = wait_samples(kafka, ["boom-1:1", "fine-1:1", "fine-1:2", "fine-1:3"])
        assert_labels(samples, "boom-1", clicked=None)  # its click is in the DLQ
        assert_labels(samples, "fine-1", clicked=2)
        assert not [s for s in samples if s.startswith("boomclose")]
        dead = dead_letters(kafka, at_least=2)
        assert reasons(dead) == {"processing_error": 2}
        details = sorted(header(m, "detail") for m in dead)
        assert details == ["RuntimeError: injected fault on boom-1",
                           "at close: RuntimeError: injected fault closing boomclose-1"]
        by_topic = {header(m, "source_topic") for m in dead}
        assert by_topic == {kafka.topics.feedback, kafka.topics.impressions}
        assert workers[0].proc.poll() is None
        # A restart of the same group does not meet the failing events again.
        workers[0].kill()
        workers.append(spawn_faulty(kafka, tmp_path, app_id, 1))
        good_request(kafka, "p_carol", "fine-2", click=3)
        assert_labels(wait_samples(kafka, ["fine-2:1", "fine-2:2", "fine-2:3"]), "fine-2", 3)
        assert workers[1].proc.poll() is None
        probe_line("event that raises in the agent (1 click, 1 close)", tried=2, landed=0,
                   dead_lettered=2)
    finally:
        stop_all(workers)


def test_a_batch_the_broker_refuses_stops_the_worker_before_it_is_acknowledged(
    kafka: KafkaConfig, tmp_path: Path,
) -> None:
    """Faust's `take_events` acknowledges a batch whose body raised (1,000 events lost in
    the issue-12 probe). The worker instead stops before returning when a batch's outputs
    cannot be delivered; the restarted worker recovers the state and delivers them."""
    app_id, marker = f"streams-{uuid.uuid4().hex[:8]}", tmp_path / "refused-once"
    workers = [spawn_faulty(kafka, tmp_path, app_id, 0, FAULTY_FLUSH_MARKER=str(marker))]
    try:
        good_request(kafka, "p_erin", "before-1", click=1)
        wait_samples(kafka, ["before-1:1", "before-1:2", "before-1:3"])
        good_request(kafka, "p_erin", "failflush-1", click=2)
        good_request(kafka, "p_frank", "failflush-2", click=None)
        assert workers[0].proc.wait(60) == worker_app.EXIT_UNDELIVERED
        assert marker.exists() and "stopping without acknowledging" in workers[0].log()
        workers.append(spawn_faulty(kafka, tmp_path, app_id, 1,
                                    FAULTY_FLUSH_MARKER=str(marker)))
        samples = wait_samples(kafka, [f"failflush-{i}:{k}" for i in (1, 2) for k in (1, 2, 3)])
        assert_labels(samples, "failflush-1", clicked=2)
        assert_labels(samples, "failflush-2", clicked=None)
        assert workers[1].proc.poll() is None
        probe_line("batch whose outputs the broker refuses (2 impressions + 1 click)",
                   tried=3, landed=3, dead_lettered=0)
    finally:
        stop_all(workers)


def test_a_late_impression_after_a_restart_is_dead_lettered(
    kafka: KafkaConfig, start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """The watermark is persisted: an impression that was late before the restart is late
    after it (it used to be accepted, then skipped at close as already counted)."""
    app_id = f"streams-{uuid.uuid4().hex[:8]}"
    settings = {"app_id": app_id, "spool_grace_s": 10}
    first = start_worker(**settings)
    good_request(kafka, "p_dave", "before", click=1)
    wait_samples(kafka, ["before:1", "before:2", "before:3"])
    time.sleep(2)  # a few ticks: the watermark is persisted with them
    first.stop()
    imp, fb, now = kafka.topics.impressions, kafka.topics.feedback, now_ms()
    produce(kafka, [  # a minute-old impression (past the 10 s grace) and its click
        (imp, b"p_dave", impression("late-1", user_id="p_dave", ts=now - 60_000).to_json_bytes()),
        (fb, b"p_dave", feedback("late-1", 1, user_id="p_dave", ts=now - 59_000).to_json_bytes()),
    ])
    start_worker(**settings)
    good_request(kafka, "p_dave", "after", click=2)
    samples = wait_samples(kafka, ["after:1", "after:2", "after:3"])
    assert_labels(samples, "after", clicked=2)
    assert not [s for s in samples if s.startswith("late-1")]
    dead = dead_letters(kafka, at_least=2)
    # Dead letters are at least once: a rebalance while the new worker joins can hand it
    # the (unwritten, so uncommitted-looking) rejected events again; they are judged alike.
    assert set(reasons(dead)) == {"late_impression", "unknown_impression"}
    probe_line("late impression + click after a restart", tried=2, landed=0,
               dead_lettered=len(set(reasons(dead))))


def test_an_impression_held_in_the_spool_through_an_outage_still_lands(
    kafka: KafkaConfig, start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """Within `spool_grace_s` an event's window is anchored at its arrival: an impression and
    its click sent two minutes late (serving's spool after a broker outage) land labelled."""
    start_worker()
    good_request(kafka, "p_erin", "live", click=None)
    wait_samples(kafka, ["live:1"])  # the worker ticks: its watermark is the wall clock
    imp, fb, now = kafka.topics.impressions, kafka.topics.feedback, now_ms()
    produce(kafka, [
        (imp, b"p_erin", impression("spooled", user_id="p_erin", ts=now - 120_000).to_json_bytes()),
        (fb, b"p_erin", feedback("spooled", 3, user_id="p_erin", ts=now - 119_000).to_json_bytes()),
    ])
    samples = wait_samples(kafka, ["spooled:1", "spooled:2", "spooled:3"])
    assert_labels(samples, "spooled", clicked=3)
    assert samples["spooled:1"]["impression_ts"] == now - 120_000
    assert read_topic(kafka, kafka.topics.dlq, until=lambda m: False, timeout_s=2,
                      strict=False) == []
    probe_line("spool-held impression + click (2 min late)", tried=2, landed=2,
               dead_lettered=0)


def test_a_state_record_never_outgrows_its_bound(
    kafka: KafkaConfig, start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """Large (contract-valid) impressions of one user: the record stays under
    `max_user_state_bytes`; what would pass it is dead-lettered as user_state_full."""
    app_id = f"streams-{uuid.uuid4().hex[:8]}"
    start_worker(app_id=app_id, max_event_bytes=65536, max_user_state_bytes=200_000)
    now, big = now_ms(), "x" * 19_000  # ≈ 57 KB per impression (prompt + query + context)
    events = [(kafka.topics.impressions, b"p_big", impression(
        f"big-{i}", user_id="p_big", ts=now, prompt=big, query=big, context={"c": big},
    ).to_json_bytes()) for i in range(6)]
    produce(kafka, events)
    dead = dead_letters(kafka, at_least=3)
    assert reasons(dead) == {"user_state_full": 3}
    samples = wait_samples(kafka, [f"big-{i}:1" for i in range(3)])
    assert sorted({s.split(":")[0] for s in samples}) == ["big-0", "big-1", "big-2"]
    sizes = changelog_sizes(kafka, app_id, "u:p_big")
    assert max(sizes) <= 200_000, sizes
    probe_line("oversized user state (6 × 57 KB impressions)", tried=6, landed=3,
               dead_lettered=len(dead))


def test_hostile_events_mixed_with_good_traffic(
    kafka: KafkaConfig, start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """Every kind of hostile event among good traffic: every good sample lands exactly once
    with the right label and weight, every hostile event is in the DLQ with its reason."""
    start_worker(**MIXED_WINDOW)
    traffic = Traffic(kafka, seed=5)
    traffic.wave(30)
    read_topic(kafka, kafka.topics.samples, until=lambda m: len(m) >= 1)  # the worker ticks
    traffic.wave(20)
    hostile, expected_reasons = hostile_events(kafka, traffic)
    produce(kafka, [(topic, key, value) for topic, key, value, _ in hostile])
    traffic.wave(20)
    traffic.close()
    expected = traffic.expected(StreamsConfig(**MIXED_WINDOW))
    messages = read_topic(kafka, kafka.topics.samples, timeout_s=90,
                          until=lambda m: len(m) >= len(expected))
    # a click on a window that has just closed (long-closed ones are forgotten: unknown)
    closed = [e for e in traffic.events if isinstance(e, Impression)][-1]
    produce(kafka, [(kafka.topics.feedback, closed.user_id.encode(),
                     raw_feedback(closed.user_id, closed.request_id, now_ms(), position=2))])
    expected_reasons["expired_impression"] += 1
    dead = dead_letters(kafka, at_least=sum(expected_reasons.values()))
    time.sleep(2)  # anything extra would arrive now
    messages = read_topic(kafka, kafka.topics.samples, until=lambda m: False, timeout_s=3,
                          strict=False)
    dead = read_topic(kafka, kafka.topics.dlq, until=lambda m: False, timeout_s=3,
                      strict=False)

    got = samples_by_id(messages)
    assert len(messages) == len(expected), "each good sample exactly once"
    assert sorted(got) == sorted(expected)
    for sample_id, sample in expected.items():
        assert got[sample_id] == pytest.approx(sample), sample_id
    assert reasons(dead) == expected_reasons
    assert all(header(m, "detail") and header(m, "field") for m in dead)
    n_hostile = len(hostile) + 1
    probe_line("mixed: hostile events", tried=n_hostile, landed=0, dead_lettered=len(dead))
    probe_line("mixed: good samples", tried=len(expected), landed=len(got), dead_lettered=0)


def hostile_events(
    kafka: KafkaConfig, traffic: Traffic
) -> tuple[list[tuple[str, bytes, bytes, str]], Counter[str]]:
    """(topic, key, value, reason) of every kind of hostile event, against the open
    requests of the traffic's last wave."""
    imp, fb, now = kafka.topics.impressions, kafka.topics.feedback, now_ms()
    open_ = [e for e in traffic.events if isinstance(e, Impression)][-1]
    victim, rid = open_.user_id, open_.request_id
    intruder = next(u for u in (f"p_intruder{i}" for i in range(1000))
                    if partition_of(kafka, u) == partition_of(kafka, victim))
    bad_field = json.loads(raw_feedback("p_h", "x", now)) | {"position": "two"}
    events: list[tuple[str, bytes, bytes, str]] = [
        (fb, b"p_h", b"{not json", "malformed_json"),
        (fb, b"p_h", json.dumps(bad_field).encode(), "invalid_field"),
        (fb, b"p_h", b'{"schema": "feedback/1"}', "missing_field"),
        (fb, b"p_h", b"{" + b" " * 70_000 + b"}", "oversized"),
        (fb, b"p_h", impression("wt", user_id="p_h", ts=now).to_json_bytes(), "wrong_topic"),
        (fb, b"p_h", raw_feedback("p_h", "ghost", now), "unknown_impression"),
        (fb, victim.encode(), raw_feedback(victim, rid, now, position=9), "position_not_shown"),
        (imp, b"p_h", impression("future", user_id="p_h", ts=YEAR_2100_MS).to_json_bytes(),
         "future_timestamp"),
        (fb, victim.encode(), raw_feedback(victim, rid, FAR_FUTURE_MS, position=2),
         "future_timestamp"),
        (imp, b"p_h", impression("stale", user_id="p_h", ts=now - 8 * DAY_MS).to_json_bytes(),
         "stale_timestamp"),
        (fb, victim.encode(), raw_feedback(victim, rid, now - 8 * DAY_MS, position=3),
         "stale_timestamp"),
        (imp, victim.encode(), open_.to_json_bytes(), "duplicate_impression"),
        (imp, b"p_h", impression("late", user_id="p_h", ts=now - 2 * 3600_000).to_json_bytes(),
         "late_impression"),
        (imp, intruder.encode(), impression(rid, user_id=intruder, ts=now).to_json_bytes(),
         "request_id_collision"),
    ]
    flood = CFG.max_orphans_per_user + 8
    events += [(fb, b"p_flooder", raw_feedback("p_flooder", f"nothing-{i}", now),
                "orphan_overflow" if i >= CFG.max_orphans_per_user else "unknown_impression")
               for i in range(flood)]
    return events, Counter(reason for *_, reason in events)
