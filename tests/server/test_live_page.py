"""The live page in headless Chromium, at desktop and phone widths, against a real server.

What a newcomer sees: league names and dated times, the selected contest kept in the URL, a
table that is not cut off on a phone, a favicon, a readable key field, and — when the stream
cannot connect — the reason (401 revoked, 429 over the key's limit) with stale data dimmed,
no endless retry on a dead key, and a way to enter a new one.

Needs Debian's ``chromium`` (``make chromium``); skipped without it unless
``OMFLOW_REQUIRE_SERVICES=1``, where its absence fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets
from tests.browser import Chromium, Page, find_chromium
from tests.conftest import Server, ServerFactory, eventually, http

DESKTOP = (1280, 800, False)
PHONE = (390, 844, True)
SIZES = pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        reason = "headless Chromium is not installed (apt-get install chromium, or make chromium)"
        if os.environ.get("OMFLOW_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + "; OMFLOW_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    browser = Chromium.launch(executable)
    yield browser
    browser.close()


@pytest.fixture
async def demo(make_server: ServerFactory) -> Server:
    """A server with the demo feed: real leagues, titles, start times and moving prices."""
    return await make_server(feed="demo", feed_interval=0.1)


@pytest.fixture
async def page_factory(chromium: Chromium) -> AsyncIterator[list[Page]]:
    pages: list[Page] = []
    yield pages
    for page in pages:
        await page.close()


async def open_page(chromium: Chromium, pages: list[Page], size: tuple[int, int, bool]) -> Page:
    page = await Page.open(chromium, *size)
    pages.append(page)
    return page


ROWS = "document.querySelectorAll('#book tbody tr').length"
ACTIVE = "document.querySelector('.contest.active')?.dataset.id"
NOTICE = (
    "!document.getElementById('notice').hidden && document.getElementById('notice').textContent"
)


@SIZES
async def test_the_page_shows_names_dates_and_keeps_the_contest_in_the_url(
    chromium: Chromium, page_factory: list[Page], demo: Server, size: tuple[int, int, bool]
) -> None:
    secret = await demo.key()
    page = await open_page(chromium, page_factory, size)
    await page.goto(f"http://127.0.0.1:{demo.port}/#key={secret}")
    await page.wait_for(f"{ROWS} > 0")
    metas = await page.eval(
        "[...document.querySelectorAll('.contest .meta')].map(m => m.textContent)"
    )
    assert metas
    for meta in metas:
        assert "lg_" not in meta, meta  # league names, not ids
        assert re.search(r"\b(NFL|NBA)\b", meta), meta
        # A date, not a bare time: a month name and a day of the month.
        assert re.search(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b", meta), meta
    # The selected contest is in the URL, and a reload keeps it.
    second = await page.eval("document.querySelectorAll('.contest')[1].dataset.id")
    await page.eval("document.querySelectorAll('.contest')[1].click()")
    await page.wait_for(f"location.hash.includes('contest={second}')")
    # Mark this document: the checks after the reload must run on the new one, not race it.
    await page.eval("window.beforeReload = true; location.reload()")
    await page.wait_for(f"!window.beforeReload && {ROWS} > 0 && {ACTIVE} === {second!r}")
    assert await page.eval("document.getElementById('title').textContent") != ""
    # The book can come over REST before the stream is open: wait for it, do not race it.
    await page.wait_for("document.getElementById('status').textContent === 'live'")


async def test_at_phone_width_nothing_is_cut_off(
    chromium: Chromium, page_factory: list[Page], demo: Server
) -> None:
    secret = await demo.key()
    page = await open_page(chromium, page_factory, PHONE)
    await page.goto(f"http://127.0.0.1:{demo.port}/#key={secret}")
    await page.wait_for(f"{ROWS} > 0")
    width = await page.eval("window.innerWidth")
    assert width == PHONE[0]
    # The page itself never scrolls sideways; the table may, inside its own box.
    assert await page.eval("document.documentElement.scrollWidth") <= width
    box = await page.eval(
        "(() => { const s = document.querySelector('#liquidity-panel .scroll');"
        " const r = s.getBoundingClientRect();"
        " return {left: r.left, right: r.right, overflow: getComputedStyle(s).overflowX,"
        " scroll: s.scrollWidth, table: document.getElementById('book').scrollWidth}; })()"
    )
    assert box["left"] >= 0
    assert box["right"] <= width
    assert box["scroll"] >= box["table"]  # every column can be reached
    if box["table"] > box["right"] - box["left"]:
        assert box["overflow"] in ("auto", "scroll")
    # The last partner's column scrolls fully into view.
    last = await page.eval(
        "(() => { const s = document.querySelector('#liquidity-panel .scroll');"
        " s.scrollLeft = s.scrollWidth;"
        " const th = [...document.querySelectorAll('#book th')].pop().getBoundingClientRect();"
        " return th.right; })()"
    )
    assert last <= width + 0.5


@SIZES
async def test_the_key_field_shows_underscores(
    chromium: Chromium, page_factory: list[Page], demo: Server, size: tuple[int, int, bool]
) -> None:
    page = await open_page(chromium, page_factory, size)
    await page.goto(f"http://127.0.0.1:{demo.port}/")
    await page.wait_for("document.getElementById('key') !== null")
    box = await page.eval(
        "(() => { const k = document.getElementById('key'); k.value = '_'.repeat(40); k.blur();"
        " const r = k.getBoundingClientRect();"
        " return {x: r.x, y: r.y, w: r.width, h: r.height}; })()"
    )
    # Inside the border only: bright pixels there are the text itself.
    image = await page.screenshot(box["x"] + 2, box["y"] + 2, box["w"] - 4, box["h"] - 4)
    underscores = image.count(minimum_brightness=150)
    assert underscores >= 40, f"the underscores are not visible ({underscores} bright pixels)"
    await page.eval("document.getElementById('key').value = ''")
    assert (await page.screenshot(box["x"] + 2, box["y"] + 2, box["w"] - 4, box["h"] - 4)).count(
        150
    ) < underscores / 4  # what was counted was the text


async def test_the_favicon_is_served(demo: Server) -> None:
    reply = await http(demo.port, "GET", "/favicon.ico")
    assert reply.status == 200
    assert reply.headers["content-type"] == "image/svg+xml"
    assert reply.body.startswith(b"<svg")


async def test_a_revoked_key_says_401_dims_the_data_stops_retrying_and_asks_for_a_key(
    chromium: Chromium, page_factory: list[Page], demo: Server
) -> None:
    secret = await demo.key()
    page = await open_page(chromium, page_factory, DESKTOP)
    await page.goto(f"http://127.0.0.1:{demo.port}/#key={secret}")
    await page.wait_for(f"{ROWS} > 0 && document.getElementById('status').textContent === 'live'")
    assert not await page.eval("document.getElementById('panels').classList.contains('stale')")
    await demo.store.revoke(demo.keys[-1].key_id, now_ms=demo.app.clock.ms())
    notice = await page.wait_for(NOTICE)
    assert "401" in notice
    assert "revoked" in notice
    assert await page.eval("document.getElementById('panels').classList.contains('stale')")
    assert await page.eval("!document.getElementById('login').hidden")  # a field for a new key
    # No retry on a dead key: no new handshake comes in the next 2.5 s (the loop would retry
    # after 1 s, then 2 s).
    before = await page.eval("performance.getEntriesByType('resource').length")
    await page.eval("new Promise(r => setTimeout(r, 2500))")
    assert not demo.app.gateway.connections
    after = await page.eval("performance.getEntriesByType('resource').length")
    assert after == before  # not even a REST probe again
    # A new key typed in connects again.
    fresh = await demo.key()
    await page.eval(
        f"document.getElementById('key').value = {fresh!r};"
        " document.getElementById('keyform').requestSubmit()"
    )
    await page.wait_for("document.getElementById('status').textContent === 'live'")
    assert await page.eval("document.getElementById('notice').hidden")
    assert not await page.eval("document.getElementById('panels').classList.contains('stale')")


async def test_over_the_keys_limit_says_429_and_comes_back_when_a_slot_frees(
    chromium: Chromium, page_factory: list[Page], demo: Server
) -> None:
    secret = await demo.key(max_connections=1)
    page = await open_page(chromium, page_factory, DESKTOP)
    await page.goto(f"http://127.0.0.1:{demo.port}/#key={secret}")
    await page.wait_for(f"{ROWS} > 0 && document.getElementById('status').textContent === 'live'")
    # Another client takes the key's one slot while the page is away.
    await page.eval("ws.close()")  # as a network blip would: the page reconnects in 1 s
    await eventually(lambda: not demo.app.gateway.connections)
    holder = await websockets.connect(demo.url(secret))
    try:
        notice = await page.wait_for(NOTICE)
        assert "429" in notice
        assert "maximum" in notice
        assert await page.eval("document.getElementById('panels').classList.contains('stale')")
        assert "reconnecting" in await page.eval("document.getElementById('status').textContent")
        assert await page.eval("document.getElementById('login').hidden")  # the key is fine
    finally:
        await holder.close()
    # The loop keeps trying and gets the slot back.
    await page.wait_for("document.getElementById('status').textContent === 'live'", within=15)
    assert await page.eval("document.getElementById('notice').hidden")
    assert not await page.eval("document.getElementById('panels').classList.contains('stale')")


async def test_state_depth_and_opportunities_show_for_a_demo_game(
    chromium: Chromium, page_factory: list[Page], demo: Server
) -> None:
    """The roadmap channels on the page: the game's state above its book, a position's depth
    on a click, and the open opportunities with their legs and edge."""
    secret = await demo.key()
    page = await open_page(chromium, page_factory, DESKTOP)
    await page.goto(f"http://127.0.0.1:{demo.port}/#key={secret}")
    await page.wait_for(f"{ROWS} > 0")
    contest = await page.eval(ACTIVE)
    # State: the demo plays its games, so a started one shows its status badge and score.
    await page.wait_for("document.querySelector('#state .badge') !== null")
    # Depth: a click on a row opens its ladders, one per partner quoting it.
    await page.eval("document.querySelector('#book tbody tr').click()")
    await page.wait_for("document.querySelectorAll('#ladders .ladder').length > 0")
    assert await page.eval("!document.getElementById('depth-panel').hidden")
    # Opportunities: two partners each offering one side far below anyone else make the best
    # arbitrage of the moneyline.
    positions = await page.eval(
        "[...document.querySelectorAll('#book tbody tr')].map(r => r.dataset.position)"
        ".filter(p => p.includes(':mk_ml:') && p.endsWith(':tf_full'))"
    )
    home = next(p for p in positions if ":side_home:" in p)
    away = next(p for p in positions if ":side_away:" in p)
    for partner, position, price in (("arb_a", home, 0.011), ("arb_b", away, 0.012)):
        await demo.publish(
            contest,
            [{"liquidity_hash": f"{partner}:{position}", "price": price, "available": 250}],
            partner_id=partner,
        )
    await page.wait_for("document.querySelectorAll('#opps tbody tr').length > 0")
    row = await page.eval("document.querySelector('#opps tbody tr').textContent")
    assert "arb_a" in row
    assert "arb_b" in row
    assert "%" in row  # the edge
    assert "0.0230" in row  # the cost: 0.011 + 0.012
