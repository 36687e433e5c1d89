"""Random books for the channel tests: partners quoting a few markets, with depth, over time."""

from __future__ import annotations

from hypothesis import strategies as st

from omflow.core.model import KEEP, STATUSES, Batch, EntryUpdate, Level, Result, Score, StateUpdate

CONTEST = "ct_1"
NOW_MS = 1_776_463_200_000
PARTNERS = ("kalshi", "polymarket", "draftkings", "fanduel")

#: (market, side, variant, participant): two-way and three-way moneylines, a spread at one
#: line, totals at two lines, and a market the opportunities leave alone.
POSITIONS = (
    ("mk_ml", "side_home", "var_0", "p_kc"),
    ("mk_ml", "side_away", "var_0", "p_sf"),
    ("mk_ml", "side_draw", "var_0", "p_draw"),
    ("mk_ml", "side_home", "var_0", "p_kc2"),  # a second hash for the same side
    ("mk_sp", "side_home", "var_-3.5", "p_kc"),
    ("mk_sp", "side_away", "var_-3.5", "p_sf"),
    ("mk_tot", "side_over", "var_47.5", "p_game"),
    ("mk_tot", "side_under", "var_47.5", "p_game"),
    ("mk_tot", "side_over", "var_44.5", "p_game"),
    ("mk_tot", "side_under", "var_44.5", "p_game"),
    ("mk_h1x", "side_home", "var_0", "p_kc"),
)
#: Drawn from with weights, so that partners often meet on the same market.
COMMON = (POSITIONS[0], POSITIONS[1], POSITIONS[0], POSITIONS[1], POSITIONS[2])
TIMEFRAMES = ("tf_full", "tf_full", "tf_full", "tf_h1")


def lh(partner_id: str, position: tuple[str, str, str, str], timeframe: str = "tf_full") -> str:
    market, side, variant, participant = position
    return f"{partner_id}:{CONTEST}:{market}:{side}:{variant}:{participant}:{timeframe}"


sizes = st.sampled_from([1, 7, 100, 2500, 12.5])


@st.composite
def entries(draw: st.DrawFn, partner_id: str, dense: bool = False) -> EntryUpdate:
    """An entry anywhere in the book, or (``dense``) on one moneyline at prices near fair."""
    if dense:
        position = draw(st.sampled_from((POSITIONS[0], POSITIONS[1], POSITIONS[3])))
        timeframe = "tf_full"
        cents = draw(st.integers(25, 55))
    else:
        position = draw(st.sampled_from(POSITIONS + COMMON))
        timeframe = draw(st.sampled_from(TIMEFRAMES))
        cents = draw(st.integers(0, 100))
    price = cents / 100
    available = draw(st.sampled_from([0, 1, 7, 100, 2500, 12.5]))
    levels: tuple[Level, ...] = ()
    if available and cents < 100 and draw(st.booleans()):
        above = draw(st.lists(st.integers(cents + 1, 100), max_size=4, unique=True))
        levels = (Level(price, available), *(Level(c / 100, draw(sizes)) for c in sorted(above)))
    return EntryUpdate(lh(partner_id, position, timeframe), price, available, levels)


@st.composite
def batches(draw: st.DrawFn, dense: bool = False) -> Batch:
    partner_id = draw(st.sampled_from(PARTNERS))
    listed = draw(st.lists(entries(partner_id, dense), max_size=8))
    full_book = draw(st.integers(0, 9)) == 0
    return Batch(partner_id, CONTEST, tuple(listed), full_book)


def clear(partner_id: str) -> Batch:
    """A full book with nothing in it: the partner leaves the contest."""
    return Batch(partner_id, CONTEST, (), full_book=True)


fees = st.dictionaries(st.sampled_from(PARTNERS), st.sampled_from([0, 0.01, 0.02, 0.07]))

scores = st.builds(Score, st.integers(0, 3), st.integers(0, 3))


@st.composite
def state_updates(draw: st.DrawFn) -> StateUpdate:
    """Any update, allowed or not: the state either applies it or refuses it whole."""
    keep = st.just(KEEP)
    return StateUpdate(
        "demo",
        CONTEST,
        draw(st.one_of(keep, st.sampled_from(STATUSES))),
        draw(st.one_of(keep, st.none(), st.sampled_from(["Q1", "Q2", "HT"]))),
        draw(st.one_of(keep, st.none(), st.sampled_from(["15:00", "00:00"]))),
        draw(st.one_of(keep, st.none(), scores)),
        draw(
            st.one_of(
                keep,
                st.none(),
                st.builds(Result, st.sampled_from(["home", "away", "draw"]), st.just(NOW_MS)),
            )
        ),
    )
