"""The research pages in a real browser (issue 19): a trader submits a small sweep from the form
(after seeing the API's refusal of a too-big grid next to the grid field), watches it finish,
reads its heatmap with the mouse and the keyboard and its ranked table; a finished backtest's
report carries the Monte Carlo fan and its summary. Same browser, server and fixtures as
tests/e2e/test_browser_dashboard.py (Debian's Chromium, nothing loaded from elsewhere, no console
error); screenshots go to the `shots` directory."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e import test_browser_dashboard as dashboard
from tests.e2e.test_browser_dashboard import _log_in, _page

pytestmark = dashboard.pytestmark  # skipped, saying why, without /usr/bin/chromium
world, browser, shots = dashboard.world, dashboard.browser, dashboard.shots  # its fixtures, shared


def test_a_trader_sweeps_from_the_form_and_reads_the_heatmap_and_the_ranking(world, browser, shots):
    server, app, _bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-bot").wait_for()
    page.get_by_role("link", name="sweeps").click()
    page.wait_for_url("**/sweeps")
    page.locator("#sweep-list").wait_for()
    assert page.locator("#nav-sweeps").get_attribute("aria-current") == "page"
    # the API refuses a grid of 1,000 combinations: its message shows next to the grid field
    page.get_by_label("grid", exact=True).fill("fast=1:100:1\nslow=101:110:1")
    page.get_by_role("button", name="run the sweep").click()
    error = page.locator("#sweep-grid-error")
    error.filter(has_text="500").wait_for()
    assert "1,000 combinations" in error.inner_text()
    assert page.get_by_label("grid", exact=True).get_attribute("aria-invalid") == "true"
    page.screenshot(path=str(shots / "research-sweeps.png"), full_page=True)
    # a tiny grid: 3 x 2 combinations on SPY's daily bars
    page.get_by_label("grid", exact=True).fill("fast=5:15:5\nslow=30,60")
    page.get_by_role("button", name="run the sweep").click()
    page.wait_for_url("**/sweeps/*")
    job = page.url.rsplit("/", 1)[1]
    cells = page.locator("#heatmap .heat-cell")
    cells.first.wait_for()
    assert cells.count() == 6 and page.locator("#heatmap").get_attribute("data-cells") == "6"
    result = httpx.get(f"{server.url}/api/v1/sweeps/{job}/result", headers=app.state.headers["ann"]).json()
    ranked = page.locator("#sweep-ranked tbody tr")
    assert ranked.count() == len(result["results"]) == 6
    best = result["results"][0]
    first_row = ranked.first.locator("td").all_inner_texts()
    assert first_row[:3] == ["1", str(best["params"]["fast"]), str(best["params"]["slow"])]
    assert page.locator("#heat-legend").count() == 1
    # hover: the cell's parameters and value are told, and its row in the ranking is marked
    cells.nth(0).hover()
    readout = page.locator("#heat-readout")
    assert readout.inner_text().startswith("fast 5, slow 30: sharpe ")
    # keyboard: one Tab stop for the grid, arrows move between cells
    cells.nth(0).focus()
    page.keyboard.press("ArrowRight")
    assert readout.inner_text().startswith("fast 10, slow 30: sharpe ")
    page.keyboard.press("ArrowUp")
    assert readout.inner_text().startswith("fast 10, slow 60: sharpe ")
    focused = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert focused.startswith("fast 10, slow 60")
    assert page.locator("#heatmap [tabindex='0']").count() == 1
    value = next(r["objective"] for r in result["results"] if r["params"] == {"fast": 10, "slow": 60})
    assert float(page.locator("#heatmap [tabindex='0']").get_attribute("data-value")) == pytest.approx(value)
    assert page.locator("#sweep-ranked tr.picked").count() == 1
    page.screenshot(path=str(shots / "research-sweep.png"), full_page=True)
    # the axes are chosen: slow across, fast up
    page.get_by_label("across").select_option("slow")
    page.locator("#heatmap").wait_for()
    cells.first.hover()
    assert readout.inner_text().startswith("slow 30, fast 5: ")
    problems[:] = [p for p in problems if "422" not in p]  # the refused grid the page was told of
    assert problems == []


def test_a_backtest_report_carries_the_monte_carlo_fan_and_its_summary(world, browser, shots):
    server, app, _bots = world
    ann = app.state.headers["ann"]
    job = httpx.post(server.url + "/api/v1/backtests", headers=ann, json={
        "strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "data": "stocks/SPY_daily.csv"}).json()["id"]
    page, problems = _page(browser, server)
    _log_in(page, server, "ann")
    page.get_by_role("link", name="ann-bot").wait_for()
    for _ in range(300):  # the job runs in the server's pool
        if httpx.get(f"{server.url}/api/v1/backtests/{job}", headers=ann).json()["status"] not in ("queued", "running"):
            break
        page.wait_for_timeout(100)
    page.goto(f"{server.url}/backtests/{job}")
    page.locator("table.tb-trades tbody tr").first.wait_for()  # dashboard.js's report is untouched
    page.locator("#fan-chart .fan-median").wait_for()
    assert page.locator("#fan-chart .fan-band").count() == 2
    assert page.locator("#montecarlo").get_attribute("data-paths") == "1000"
    summary = page.locator("#mc-summary").inner_text()
    mc = httpx.get(f"{server.url}/api/v1/backtests/{job}/montecarlo?paths=200&seed=3", headers=ann).json()
    page.get_by_label("paths", exact=True).fill("200")
    page.get_by_label("seed", exact=True).fill("3")
    page.get_by_role("button", name="resample").click()
    page.locator("#montecarlo[data-paths='200']").wait_for()
    assert page.locator("#mc-summary").inner_text() != summary
    prob_loss = float(page.locator("#mc-summary dd").first.inner_text())
    assert prob_loss == pytest.approx(mc["summary"]["prob_loss"], abs=1e-4)
    assert int(page.locator("#fan-chart").get_attribute("data-points")) == len(mc["fan"]["trade"]) <= 500
    page.get_by_label("paths", exact=True).fill("10001")  # beyond the bound: the API's 422, said on the page
    page.get_by_role("button", name="resample").click()
    page.locator("#mc-out [role='alert']").filter(has_text="paths").wait_for()
    page.get_by_label("paths", exact=True).fill("1000")
    page.get_by_role("button", name="resample").click()
    page.locator("#montecarlo[data-paths='1000'] #fan-chart").wait_for()
    page.locator("#montecarlo").screenshot(path=str(shots / "research-montecarlo.png"))
    problems[:] = [p for p in problems if "422" not in p]  # the refused request the page was told of
    assert problems == []


def test_a_subscriber_has_no_sweeps_link_and_the_sweeps_page_shows_them_nothing(world, browser, shots):
    server, _app, _bots = world
    page, problems = _page(browser, server)
    _log_in(page, server, "sam")
    page.wait_for_url("**/feed")
    page.get_by_text("live", exact=True).wait_for()  # the feed page has its session (see the dashboard's test)
    assert page.locator("#nav-sweeps").is_hidden()
    page.goto(server.url + "/sweeps")
    page.locator("#main [role='alert']").wait_for()
    assert page.locator("#sweep-form").count() == 0 and page.locator("table").count() == 0
    problems[:] = [p for p in problems if "403" not in p]  # the refused read the page was told of
    assert problems == []
