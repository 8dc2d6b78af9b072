"""The worker core both event loops call (edgecorn/worker.py), with a fake manager and
a fake clock: the drain, the request limit and the tick's failure policy."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from edgecorn import worker


class FakeManager:
    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.request_limit: int | None = None
        self.on_request_limit: Any = None
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1
        raise RuntimeError("broken connection")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay


def test_drain_returns_once_connections_and_tasks_are_gone() -> None:
    manager: Any = FakeManager()
    clock = Clock()
    manager.connections = {"conn"}
    tasks = [1, 2]

    async def finish_later(delay: float) -> None:
        await clock.sleep(delay)
        if len(clock.slept) == 3:
            manager.connections.clear()
        if len(clock.slept) == 5:
            tasks.clear()

    done = asyncio.run(worker.drain(manager, lambda: len(tasks), 10.0, clock.time, finish_later))
    assert done is True and len(clock.slept) == 5


def test_drain_gives_up_at_the_graceful_timeout_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager: Any = FakeManager()
    clock = Clock()
    manager.connections = {"a", "b"}
    with caplog.at_level(logging.INFO, logger="edgecorn.error"):
        done = asyncio.run(worker.drain(manager, lambda: 0, 1.0, clock.time, clock.sleep))
    assert done is False
    assert 1.0 <= clock.now - 100.0 < 1.0 + 2 * worker.DRAIN_POLL  # bounded by the timeout
    assert "Graceful timeout reached: closing 2 connections" in caplog.text


def test_request_limit_tells_the_supervisor_then_stops() -> None:
    manager: Any = FakeManager()
    calls: list[str] = []
    worker.arm_request_limit(
        manager, 5, lambda: calls.append("retire"), lambda: calls.append("stop")
    )
    assert manager.request_limit == 5
    manager.on_request_limit()
    assert calls == ["retire", "stop"]
    unlimited: Any = FakeManager()
    worker.arm_request_limit(unlimited, None, None, lambda: calls.append("x"))
    assert unlimited.request_limit is None and unlimited.on_request_limit is None


def test_a_failing_tick_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    manager: Any = FakeManager()
    with caplog.at_level(logging.ERROR, logger="edgecorn.error"):
        worker.tick(manager)
        worker.tick(manager)
    assert manager.ticks == 2
    assert caplog.text.count("error in the connection manager's tick") == 2


class FakeRuntime:
    """Absolute timers on a clock the test moves; due timers run in time order."""

    def __init__(self) -> None:
        self.clock = 50.0
        self.timers: list[tuple[float, Any]] = []

    def now(self) -> float:
        return self.clock

    def call_at(self, when: float, callback: Any) -> Any:
        entry = (when, callback)
        self.timers.append(entry)
        runtime = self

        class Handle:
            def cancel(self) -> None:
                if entry in runtime.timers:
                    runtime.timers.remove(entry)

        return Handle()

    def advance(self, seconds: float) -> None:
        self.clock += seconds
        while due := sorted((t for t in self.timers if t[0] <= self.clock), key=lambda t: t[0]):
            self.timers.remove(due[0])
            due[0][1]()


def test_ticker_ticks_at_whole_seconds_catches_up_and_stops() -> None:
    runtime, manager = FakeRuntime(), FakeManager()
    manager.tick = lambda: setattr(manager, "ticks", manager.ticks + 1)  # type: ignore[method-assign]
    ticker = worker.Ticker(runtime, manager)  # type: ignore[arg-type]
    runtime.advance(0.99)
    assert manager.ticks == 0
    runtime.advance(0.02)
    assert manager.ticks == 1
    assert [when for when, _ in runtime.timers] == [52.0]  # from the start, not from the tick
    runtime.advance(3.5)  # the loop stalled: the missed seconds are ticked back to back
    assert manager.ticks == 4
    ticker.stop()
    runtime.advance(10)
    assert manager.ticks == 4 and runtime.timers == []
