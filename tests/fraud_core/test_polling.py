"""poll_until: the one polling loop (servers, deployments, Dagster runs), on a fake clock."""

from __future__ import annotations

import pytest

from fraud_core.polling import poll_until


class FakeClock:
    """A monotonic clock that only moves when the loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_truthy_answer_sleeping_between_probes() -> None:
    clock = FakeClock()
    answers = iter([None, "", "ready", "later"])
    value = poll_until(
        lambda: next(answers), what="x", timeout=10, interval=2, sleep=clock.sleep, clock=clock
    )
    assert value == "ready" and clock.sleeps == [2, 2]


def test_an_answer_right_at_the_deadline_still_counts() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def probe() -> bool:
        calls.append(clock.now)
        return clock.now >= 3

    assert poll_until(probe, what="x", timeout=3, interval=1.5, sleep=clock.sleep, clock=clock)
    assert calls == [0, 1.5, 3]


def test_times_out_naming_what_it_waited_for() -> None:
    clock = FakeClock()
    with pytest.raises(TimeoutError, match=r"timed out after 2.5 s waiting for the asset graph"):
        poll_until(
            lambda: None,
            what="the asset graph",
            timeout=2.5,
            interval=1,
            sleep=clock.sleep,
            clock=clock,
        )
    assert clock.sleeps == [1, 1, 1]  # probed at 0, 1, 2 and 3


def test_a_probe_gives_up_by_raising() -> None:
    def probe() -> None:
        raise RuntimeError("the server exited")

    with pytest.raises(RuntimeError, match="the server exited"):
        poll_until(probe, what="x", timeout=60, interval=1)


def test_the_probe_is_called_once_even_with_no_time() -> None:
    assert poll_until(lambda: 7, what="x", timeout=0, interval=1) == 7
