"""
`interleaved_times`: the rotation, the parts and the warm-up; `median_ratio`; `stopwatch`.
(`measure_inference_time` on a real model is tested in sweep_test.py.)
"""

from types import SimpleNamespace

import pytest
from allennlp.common.checks import ConfigurationError

from early_exit.sweep import timing
from early_exit.sweep.timing import interleaved_times, median_ratio, stopwatch


def recording(name, log, seconds):
    def run(part):
        log.append((name, part))
        return seconds

    return run


def test_rounds_rotate_and_parts_take_turns():
    log = []
    parts = [slice(0, 2), slice(2, 4)]
    rounds = []
    times = interleaved_times(
        [recording("a", log, 1.0), recording("b", log, 2.0), recording("c", log, 3.0)],
        repeats=3,
        parts=parts,
        after_round=rounds.append,
    )
    assert times == [[2.0] * 3, [4.0] * 3, [6.0] * 3]  # a round's time: the sum over the parts
    assert rounds == [0, 1, 2, 3]
    warmup, timed = log[:6], log[6:]
    assert warmup == [(name, part) for name in "abc" for part in parts]
    order = [name for name, _ in timed]
    # Round r starts with run r mod 3, and every part is a turn of each run.
    assert order == list("abcabc" + "bcabca" + "cabcab")
    assert [part for _, part in timed[:3]] == [parts[0]] * 3


def test_without_warmup_only_the_rounds_run():
    log = []
    times = interleaved_times([recording("a", log, 0.5)], repeats=2, warmup=False)
    assert times == [[0.5, 0.5]] and log == [("a", slice(None))] * 2


def test_repeats_must_be_positive():
    with pytest.raises(ConfigurationError, match="repeats"):
        interleaved_times([recording("a", [], 1.0)], repeats=0)


def test_median_ratio_is_the_median_of_per_round_ratios():
    assert median_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 1.0]) == 3.0
    assert median_ratio([1.0], [0.0]) == pytest.approx(1e12)  # no division by zero


def test_stopwatch_times_the_work_and_only_the_work(monkeypatch):
    clock = iter([10.0, 12.5])  # perf_counter before and after the work
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    calls = []
    assert stopwatch(lambda: calls.append(1)) == 2.5 and calls == [1]


def test_stopwatch_waits_for_queued_device_work_before_and_after(monkeypatch):
    events = []
    monkeypatch.setattr(timing.torch.cuda, "synchronize", lambda: events.append("sync"))
    clock = SimpleNamespace(perf_counter=lambda: events.append("clock") or 0.0)
    monkeypatch.setattr(timing, "time", clock)
    stopwatch(lambda: events.append("work"), cuda=True)
    assert events == ["sync", "clock", "work", "sync", "clock"]
    events.clear()
    stopwatch(lambda: events.append("work"))
    assert events == ["clock", "work", "clock"]  # no device: nothing to wait for
