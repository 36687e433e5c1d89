"""The subscription registry: per-connection filters and the contest index kept in step."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from omflow.core.subscriptions import FilterChange, Subscriptions


def test_first_subscribe() -> None:
    subs: Subscriptions[str] = Subscriptions()
    change = subs.subscribe("c1", ["ct_a", "ct_b"])
    assert change == FilterChange(
        topics=("ct_a", "ct_b"),
        added=("ct_a", "ct_b"),
        removed=(),
        first=("ct_a", "ct_b"),
        last=(),
    )
    assert subs.filter_of("c1") == ("ct_a", "ct_b")
    assert list(subs.subscribers("ct_a")) == ["c1"]
    assert sorted(subs.topics()) == ["ct_a", "ct_b"]
    assert subs.count() == 2


def test_resubscribe_replaces_the_filter() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a", "ct_b"])
    subs.subscribe("c2", ["ct_b"])
    change = subs.subscribe("c1", ["ct_c", "ct_b"])
    assert change == FilterChange(
        topics=("ct_c", "ct_b"),
        added=("ct_c",),
        removed=("ct_a",),
        first=("ct_c",),
        last=("ct_a",),
    )
    assert subs.filter_of("c1") == ("ct_c", "ct_b")
    assert list(subs.subscribers("ct_a")) == []
    assert sorted(subs.subscribers("ct_b")) == ["c1", "c2"]
    assert sorted(subs.topics()) == ["ct_b", "ct_c"]
    assert subs.count() == 3


def test_resubscribe_to_the_same_filter_changes_nothing() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a", "ct_b"])
    change = subs.subscribe("c1", ["ct_a", "ct_b"])
    assert change == FilterChange(("ct_a", "ct_b"), (), (), (), ())


def test_resubscribe_can_reorder() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a", "ct_b"])
    change = subs.subscribe("c1", ["ct_b", "ct_a"])
    assert change == FilterChange(("ct_b", "ct_a"), (), (), (), ())
    assert subs.filter_of("c1") == ("ct_b", "ct_a")


def test_empty_subscribe_keeps_the_filter() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a", "ct_b"])
    change = subs.subscribe("c1", [])
    assert change == FilterChange(("ct_a", "ct_b"), (), (), (), ())
    assert subs.filter_of("c1") == ("ct_a", "ct_b")
    assert list(subs.subscribers("ct_a")) == ["c1"]


def test_empty_subscribe_of_a_new_connection_registers_nothing() -> None:
    subs: Subscriptions[str] = Subscriptions()
    assert subs.subscribe("c1", []) == FilterChange((), (), (), (), ())
    assert subs.filter_of("c1") == ()
    assert list(subs.topics()) == []
    assert subs.count() == 0


def test_duplicates_are_folded() -> None:
    subs: Subscriptions[str] = Subscriptions()
    change = subs.subscribe("c1", ["ct_a", "ct_a", "ct_b", "ct_a"])
    assert change.topics == ("ct_a", "ct_b")
    assert change.first == ("ct_a", "ct_b")
    assert subs.count() == 2


def test_first_is_only_for_contests_without_subscribers() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a"])
    change = subs.subscribe("c2", ["ct_a", "ct_b"])
    assert change.added == ("ct_a", "ct_b")
    assert change.first == ("ct_b",)


def test_unsubscribe_removes_and_ignores_unknown_ids() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a", "ct_b", "ct_c"])
    subs.subscribe("c2", ["ct_b"])
    change = subs.unsubscribe("c1", ["ct_x", "ct_b", "ct_a", "ct_b"])
    assert change == FilterChange(
        topics=("ct_b", "ct_a"), added=(), removed=("ct_b", "ct_a"), first=(), last=("ct_a",)
    )
    assert subs.filter_of("c1") == ("ct_c",)
    assert list(subs.subscribers("ct_b")) == ["c2"]
    assert subs.unsubscribe("c1", ["ct_a"]) == FilterChange((), (), (), (), ())


def test_unsubscribe_of_an_unknown_connection() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a"])
    assert subs.unsubscribe("c9", ["ct_a"]) == FilterChange((), (), (), (), ())
    assert list(subs.subscribers("ct_a")) == ["c1"]


def test_unsubscribing_everything_forgets_the_connection() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a", "ct_b"])
    change = subs.unsubscribe("c1", ["ct_a", "ct_b"])
    assert change.last == ("ct_a", "ct_b")
    assert subs.filter_of("c1") == ()
    assert list(subs.topics()) == []
    assert subs.count() == 0
    # Subscribing again starts afresh.
    assert subs.subscribe("c1", ["ct_a"]).first == ("ct_a",)


def test_drop() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.subscribe("c1", ["ct_a", "ct_b"])
    subs.subscribe("c2", ["ct_b"])
    assert subs.drop("c1") == ("ct_a",)
    assert subs.filter_of("c1") == ()
    assert list(subs.subscribers("ct_b")) == ["c2"]
    assert subs.drop("c1") == ()
    assert subs.drop("c2") == ("ct_b",)
    assert list(subs.topics()) == []
    assert subs.count() == 0


def test_subscribers_in_subscription_order() -> None:
    subs: Subscriptions[int] = Subscriptions()
    for conn in (3, 1, 2):
        subs.subscribe(conn, ["ct_a"])
    assert list(subs.subscribers("ct_a")) == [3, 1, 2]
    subs.drop(1)
    assert list(subs.subscribers("ct_a")) == [3, 2]


CONNS = st.sampled_from(["c1", "c2", "c3", "c4"])
CONTEST_LISTS = st.lists(st.sampled_from(["ct_a", "ct_b", "ct_c", "ct_d", "ct_e"]), max_size=6)


class RegistryMachine(RuleBasedStateMachine):
    """Drives the registry against a model of per-connection filters."""

    def __init__(self) -> None:
        super().__init__()
        self.subs: Subscriptions[str] = Subscriptions()
        self.model: dict[str, list[str]] = {}

    def subscribed_contests(self) -> set[str]:
        return {c for contest_ids in self.model.values() for c in contest_ids}

    def check_first_last(self, before: set[str], change: FilterChange) -> None:
        after = self.subscribed_contests()
        assert set(change.first) == after - before
        assert set(change.last) == before - after
        assert len(change.first) == len(set(change.first))
        assert len(change.last) == len(set(change.last))

    @rule(conn=CONNS, contest_ids=CONTEST_LISTS)
    def subscribe(self, conn: str, contest_ids: list[str]) -> None:
        before = self.subscribed_contests()
        old = self.model.get(conn, [])
        change = self.subs.subscribe(conn, contest_ids)
        if contest_ids:
            self.model[conn] = list(dict.fromkeys(contest_ids))
        new = self.model.get(conn, [])
        assert change.topics == tuple(new)
        assert change.added == tuple(c for c in new if c not in old)
        self.check_first_last(before, change)

    @rule(conn=CONNS, contest_ids=CONTEST_LISTS)
    def unsubscribe(self, conn: str, contest_ids: list[str]) -> None:
        before = self.subscribed_contests()
        old = self.model.get(conn, [])
        removed = [c for c in dict.fromkeys(contest_ids) if c in old]
        remaining = [c for c in old if c not in removed]
        if remaining:
            self.model[conn] = remaining
        else:
            self.model.pop(conn, None)
        change = self.subs.unsubscribe(conn, contest_ids)
        assert change.topics == tuple(removed)
        assert change.added == ()
        assert change.first == ()
        self.check_first_last(before, change)

    @rule(conn=CONNS)
    def drop(self, conn: str) -> None:
        before = self.subscribed_contests()
        self.model.pop(conn, None)
        last = self.subs.drop(conn)
        assert set(last) == before - self.subscribed_contests()

    @invariant()
    def filters_match_the_model(self) -> None:
        for conn in ("c1", "c2", "c3", "c4"):
            assert self.subs.filter_of(conn) == tuple(self.model.get(conn, []))
        assert self.subs.count() == sum(len(f) for f in self.model.values())

    @invariant()
    def index_is_the_inverse_of_the_filters(self) -> None:
        inverse: dict[str, set[str]] = {}
        for conn in ("c1", "c2", "c3", "c4"):
            for contest_id in self.subs.filter_of(conn):
                inverse.setdefault(contest_id, set()).add(conn)
        index = {c: list(self.subs.subscribers(c)) for c in self.subs.topics()}
        assert {c: set(s) for c, s in index.items()} == inverse
        for subscribers in index.values():
            assert subscribers  # no contest is listed without a subscriber
            assert len(subscribers) == len(set(subscribers))
        for contest_id in ("ct_a", "ct_b", "ct_c", "ct_d", "ct_e"):
            assert set(self.subs.subscribers(contest_id)) == inverse.get(contest_id, set())


RegistryMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
TestRegistry = RegistryMachine.TestCase
