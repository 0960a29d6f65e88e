"""The batched waiters' schedule, against a fake fetcher whose resources end their transition at set
times: one call answers every pending id, a kind is never polled more often than ``min_gap``, a wait
can ask for its first look at a given time, and what earlier waits took shapes when new ones look."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from egressctl.cloud.errors import AuthError
from egressctl.cloud.waiters import GONE, LEARN_MIN, Wait, Waiters


class FakeFetcher:
    """Resource ``rid`` is "ready" once ``ready_at[rid]`` (monotonic) has passed; logs every call."""

    def __init__(self) -> None:
        self.ready_at: dict[str, float] = {}
        self.calls: list[tuple[float, str, list[str]]] = []
        self.deny = False

    def fetch(self, kind: str, ids: list[str]) -> dict[str, Any]:
        now = time.monotonic()
        self.calls.append((now, kind, list(ids)))
        if self.deny:
            raise AuthError("Forbidden.RAM", "not allowed", 403, "req")
        return {rid: ("ready" if now >= self.ready_at[rid] else "busy") for rid in ids if rid in self.ready_at}


class Results:
    def __init__(self) -> None:
        self.got: dict[str, tuple[str, float]] = {}
        self.cv = threading.Condition()

    def cb(self, rid: str):
        def on_result(status: str, obj: Any) -> None:
            with self.cv:
                self.got[rid] = (status, time.monotonic())
                self.cv.notify_all()
        return on_result

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.got) >= n, timeout), f"only {len(self.got)} of {n} ended"


def wait(rid: str, res: Results, what: str = "ready", **kw: Any) -> Wait:
    return Wait("instance", rid, lambda o: o == "ready", res.cb(rid), what=what, **kw)


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher()


def test_one_call_answers_every_pending_id(fetcher: FakeFetcher) -> None:
    res = Results()
    w = Waiters(fetcher, poll_interval=0.2).start()  # type: ignore[arg-type]
    try:
        now = time.monotonic()
        for i in range(50):
            fetcher.ready_at[f"i-{i}"] = now + 0.3
            w.add(wait(f"i-{i}", res))
        res.wait_for(50)
    finally:
        w.stop()
    assert all(status == "done" for status, _ in res.got.values())
    # 50 waits, a handful of rounds: each call carried every pending id
    assert len(fetcher.calls) <= 6
    assert max(len(ids) for _, _, ids in fetcher.calls) == 50


def test_a_kind_is_never_polled_more_often_than_min_gap(fetcher: FakeFetcher) -> None:
    res = Results()
    w = Waiters(fetcher, poll_interval=0.4).start()  # type: ignore[arg-type]
    try:
        start = time.monotonic()
        for i in range(20):  # staggered waits: each wants its own first look
            fetcher.ready_at[f"i-{i}"] = start + 1.0
            w.add(wait(f"i-{i}", res))
            time.sleep(0.02)
        res.wait_for(20)
    finally:
        w.stop()
    times = [t for t, _, _ in fetcher.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= w.min_gap - 0.01


def test_first_check_s_brings_the_first_look_forward(fetcher: FakeFetcher) -> None:
    res = Results()
    w = Waiters(fetcher, poll_interval=2.0).start()  # type: ignore[arg-type]
    try:
        t0 = time.monotonic()
        fetcher.ready_at["i-1"] = t0
        w.add(wait("i-1", res, first_check_s=0.05))
        res.wait_for(1)
    finally:
        w.stop()
    # the default schedule would look first after poll_interval / 4 = 0.5 s
    assert fetcher.calls[0][0] - t0 < 0.3
    assert res.got["i-1"][0] == "done"


def test_what_earlier_waits_took_delays_the_first_look_and_saves_calls(fetcher: FakeFetcher) -> None:
    res = Results()
    w = Waiters(fetcher, poll_interval=0.4).start()  # type: ignore[arg-type]
    try:
        # LEARN_MIN waits that take 1.2 s (first looks at 0.1, 0.25, 0.475, 0.81, 1.21 s: five calls)
        t0 = time.monotonic()
        for i in range(LEARN_MIN):
            fetcher.ready_at[f"a-{i}"] = t0 + 1.2
            w.add(wait(f"a-{i}", res, what="slow thing"))
        res.wait_for(LEARN_MIN)
        learned_calls = len(fetcher.calls)
        t1 = time.monotonic()
        fetcher.ready_at["b"] = t1 + 1.2
        w.add(wait("b", res, what="slow thing"))
        res.wait_for(LEARN_MIN + 1)
        after = [t for t, _, ids in fetcher.calls[learned_calls:]]
        # and a wait for something else still gets the default, early look
        t2 = time.monotonic()
        fetcher.ready_at["c"] = t2 + 1.2
        w.add(wait("c", res, what="other thing"))
        res.wait_for(LEARN_MIN + 2)
        other = [t for t, _, ids in fetcher.calls if "c" in ids]
    finally:
        w.stop()
    assert learned_calls >= 4
    assert after[0] - t1 >= 1.0, "the first look came before the fastest earlier wait had ended"
    assert len(after) <= 2
    assert res.got["b"][1] - fetcher.ready_at["b"] < 0.4, "found late"
    assert other[0] - t2 < 0.3


def test_refused_credentials_end_the_waits_of_that_kind(fetcher: FakeFetcher) -> None:
    res = Results()
    fetcher.deny = True
    w = Waiters(fetcher, poll_interval=0.2).start()  # type: ignore[arg-type]
    try:
        fetcher.ready_at["i-1"] = time.monotonic()
        w.add(wait("i-1", res))
        res.wait_for(1)
    finally:
        w.stop()
    status, _ = res.got["i-1"]
    assert status == "auth"
    assert len(fetcher.calls) == 1  # not asked again


def test_gone_is_the_answer_for_an_id_the_api_does_not_return(fetcher: FakeFetcher) -> None:
    res = Results()
    seen: list[Any] = []
    w = Waiters(fetcher, poll_interval=0.2).start()  # type: ignore[arg-type]
    try:
        w.add(Wait("instance", "i-missing", lambda o: (seen.append(o), o is GONE)[1], res.cb("i-missing")))
        res.wait_for(1)
    finally:
        w.stop()
    assert seen == [GONE] and res.got["i-missing"][0] == "done"
