"""The lingering close's wait for the peer's acks (edgecorn.tcp.FlushWait), fed numbers:
both backends ask it, so its decisions are tested once, here."""

from __future__ import annotations

from edgecorn.tcp import Flush, FlushWait


def test_nothing_unacked_is_done_at_once() -> None:
    assert FlushWait(100.0, timeout=10.0).decide(0, 100.0) is Flush.DONE


def test_a_peer_that_acks_nothing_gets_one_timeout() -> None:
    wait = FlushWait(100.0, timeout=10.0)
    assert wait.decide(5000, 100.0) is Flush.WAIT
    assert wait.decide(5000, 109.9) is Flush.WAIT
    assert wait.decide(5000, 110.0) is Flush.GIVE_UP


def test_progress_restarts_the_timeout() -> None:
    wait = FlushWait(100.0, timeout=10.0)
    assert wait.decide(5000, 100.0) is Flush.WAIT
    assert wait.decide(4000, 109.0) is Flush.WAIT  # progress: 10 s more from here
    assert wait.decide(4000, 118.9) is Flush.WAIT
    assert wait.decide(4000, 119.0) is Flush.GIVE_UP


def test_more_unacked_is_no_progress() -> None:
    # The count can grow (the last writes reach the kernel): only less counts as progress.
    wait = FlushWait(100.0, timeout=10.0)
    assert wait.decide(4000, 100.0) is Flush.WAIT
    assert wait.decide(6000, 105.0) is Flush.WAIT
    assert wait.decide(6000, 110.0) is Flush.GIVE_UP


def test_done_once_everything_is_acked_even_late() -> None:
    wait = FlushWait(100.0, timeout=10.0)
    assert wait.decide(5000, 100.0) is Flush.WAIT
    assert wait.decide(0, 200.0) is Flush.DONE
