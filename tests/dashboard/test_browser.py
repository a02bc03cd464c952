"""The dashboard in a real browser: Playwright driving Debian's Chromium.

Logs in as the admin and as an account, checks that the account cannot see
another's data, creates and revokes a key, reads a trace made by a real request
and checks that the charts draw (a uPlot canvas with data points). Screenshots of
every page go to the test's output folder (``tmp_path``; kept by pytest).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.support import ADMIN_KEY, Gateway, gateway

CHROMIUM = next((p for p in (os.environ.get("TOLLWAY_CHROMIUM"), "/usr/bin/chromium",
                             shutil.which("chromium"), shutil.which("chromium-browser")) if p
                 and os.path.exists(p)), None)  # fmt: skip

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install -y chromium)"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway(f"sqlite:///{tmp_path_factory.mktemp('browser') / 't.db'}") as g:
        yield g


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _login(browser: Any, url: str, key: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.goto(url + "/dashboard")
    assert page.url.endswith("/dashboard/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/dashboard/")
    return page


def test_admin_sees_charts_traces_models_and_accounts(gw: Gateway, browser: Any,
                                                      tmp_path: Path) -> None:
    request_id = gw.chat(gw.a, "hello from the browser test")
    gw.chat(gw.b, "and from beta")
    page = _login(browser, gw.url, ADMIN_KEY)
    page.goto(gw.url + f"/dashboard/traces/{request_id}")
    for _ in range(50):  # traces are written within a second
        if page.locator("#attempts").count():
            break
        page.wait_for_timeout(200)
        page.reload()
    assert "hello from the browser test" in page.content()  # the stored request body
    assert page.locator("#attempts tbody tr").count() == 1
    page.screenshot(path=str(tmp_path / "trace.png"), full_page=True)

    page.goto(gw.url + "/dashboard/?range=1h&bucket=hour")
    page.wait_for_selector(".chart[data-series=requests] canvas")
    for name in ("spend", "requests"):
        chart = page.locator(f".chart[data-series={name}]")
        assert chart.locator("canvas").count() == 1
        assert int(chart.get_attribute("data-points") or 0) > 0
        assert chart.locator(".u-legend").count() == 1
    # uPlot holds data points above zero for both charts, and drew them: the canvas
    # has the series' colour in it (not only axes and grid)
    positive = page.evaluate("window.tollwayCharts.map(p => p.data.slice(1).flat()"
                             ".filter(v => v > 0).length)")
    assert len(positive) == 2 and all(n > 0 for n in positive), positive
    drawn = page.evaluate("""() => [...document.querySelectorAll('.chart canvas')].map(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i] < 80 && d[i + 1] > 60 && d[i + 1] < 110 && d[i + 2] > 170) n++;
        }
        return n; })""")
    assert all(n > 20 for n in drawn), drawn  # pixels of the first series' blue #2457c5
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
    for path in ("accounts", f"accounts/{gw.a.id}", "traces", "models"):
        page.goto(f"{gw.url}/dashboard/{path}")
        assert page.locator("h1").count() == 1
        page.screenshot(path=str(tmp_path / (path.replace("/", "-") + ".png")), full_page=True)
    assert "beta" in page.goto(gw.url + "/dashboard/accounts").text()  # type: ignore[union-attr]
    print(f"screenshots in {tmp_path}")  # noqa: T201


def test_an_account_on_a_phone_creates_and_revokes_a_key_and_sees_only_its_own(
    gw: Gateway, browser: Any, tmp_path: Path
) -> None:
    mine = gw.chat(gw.a, "alpha on the phone")
    theirs = gw.chat(gw.b, "beta elsewhere")
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
             "is_mobile": True, "has_touch": True}
    page = _login(browser, gw.url, gw.a.key, **phone)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways page
    page.screenshot(path=str(tmp_path / "phone-overview.png"), full_page=True)
    page.click("text=Account")
    page.wait_for_url(f"{gw.url}/dashboard/accounts/{gw.a.id}")
    page.fill("input[name=name]", "from-the-browser")
    page.click("text=Create key")
    secret = page.locator("#new-key").inner_text()
    assert secret.startswith("tw-")
    page.screenshot(path=str(tmp_path / "phone-new-key.png"), full_page=True)
    page.goto(f"{gw.url}/dashboard/accounts/{gw.a.id}")
    assert secret not in page.content()
    row = page.locator("#keys tr", has_text="from-the-browser")
    row.locator("button", has_text="Revoke").click()
    page.wait_for_url(f"{gw.url}/dashboard/accounts/{gw.a.id}")
    assert "revoked" in page.locator("#keys tr", has_text="from-the-browser").inner_text()
    # another account's pages are 404s; the trace list holds only alpha's
    for path in (f"traces/{theirs}", f"accounts/{gw.b.id}"):
        reply = page.goto(f"{gw.url}/dashboard/{path}")
        assert reply is not None and reply.status == 404
    page.goto(f"{gw.url}/dashboard/traces")
    for _ in range(50):
        if mine in page.content():
            break
        page.wait_for_timeout(200)
        page.reload()
    assert mine in page.content() and theirs not in page.content()
    page.screenshot(path=str(tmp_path / "phone-traces.png"), full_page=True)
    page.click("text=Log out")
    page.wait_for_url(gw.url + "/dashboard/login")
    page.goto(gw.url + "/dashboard/")
    assert page.url.endswith("/dashboard/login")
