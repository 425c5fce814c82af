"""The worker's Faust app uses `QuietMonitor`: no per-event bookkeeping, offsets still kept."""

from __future__ import annotations

from faust.types import TP

from streams.app import QuietMonitor, ToolrecApp


def test_the_app_monitor_is_quiet_unless_another_is_asked_for() -> None:
    from faust.sensors import Monitor

    assert isinstance(ToolrecApp("quiet-monitor-test").monitor, QuietMonitor)
    chosen = ToolrecApp("full-monitor-test", Monitor=Monitor).monitor
    assert type(chosen) is Monitor


def test_per_event_hooks_record_nothing_but_offsets_are_tracked() -> None:
    monitor = QuietMonitor()
    tp = TP("toolrec.impressions", 0)
    monitor.on_message_in(tp, 7, object())
    assert monitor.on_stream_event_in(tp, 7, object(), object()) is None
    monitor.on_stream_event_out(tp, 7, object(), object(), None)
    monitor.on_message_out(tp, 7, object())
    assert monitor.messages_received_total == 0 and monitor.events_total == 0
    monitor.track_tp_end_offset(tp, 42)
    assert monitor.tp_end_offsets[tp] == 42
