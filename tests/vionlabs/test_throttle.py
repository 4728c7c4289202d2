"""The shared Throttle: one 429 slows every thread and client that shares it."""

from __future__ import annotations

import threading
import time

import pytest
import responses

from dashboard.vionlabs import Throttle, VionlabsRateLimited
from tests.vionlabs.fakes import TASK_URL, make_client


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_new_throttle_does_not_block():
    throttle = Throttle()
    assert throttle.remaining() == 0
    throttle.wait()  # returns at once; a hang here would time the test run out


def test_pause_extends_but_never_shortens():
    clock = FakeClock()
    throttle = Throttle(clock=clock)
    throttle.pause(10)
    throttle.pause(2)
    assert throttle.remaining() == 10
    clock.now += 4
    throttle.pause(8)
    assert throttle.remaining() == 8
    clock.now += 8
    assert throttle.remaining() == 0


def test_negative_pause_is_ignored():
    clock = FakeClock()
    throttle = Throttle(clock=clock)
    throttle.pause(-5)
    assert throttle.remaining() == 0


def test_wait_blocks_every_thread_until_the_pause_ends():
    throttle = Throttle()
    throttle.pause(0.3)
    waited: list[float] = []

    def worker() -> None:
        started = time.monotonic()
        throttle.wait()
        waited.append(time.monotonic() - started)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert len(waited) == 4
    assert all(seconds >= 0.25 for seconds in waited), waited


def test_a_pause_extended_while_waiting_is_honoured():
    throttle = Throttle()
    throttle.pause(0.1)
    done = threading.Event()

    def worker() -> None:
        throttle.wait()
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    throttle.pause(0.4)
    assert not done.wait(0.2)  # still paused after the first pause would have ended
    thread.join(timeout=5)
    assert done.is_set()


def test_a_429_seen_by_one_client_pauses_another():
    throttle = Throttle()
    first, _ = make_client(throttle=throttle, max_retries=0)
    second, _ = make_client(throttle=throttle)
    with responses.RequestsMock() as mocked:
        mocked.get(TASK_URL, status=429, headers={"Retry-After": "0.3"})
        mocked.get(TASK_URL, json={"status": "done"})
        with pytest.raises(VionlabsRateLimited):
            first.get_task("tt1", "adbreaks", "1.0.1")
        assert throttle.remaining() > 0.2
        started = time.monotonic()
        assert second.get_task("tt1", "adbreaks", "1.0.1").status == "done"
        assert time.monotonic() - started >= 0.2
