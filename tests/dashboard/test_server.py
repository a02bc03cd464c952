"""The dashboard over HTTP against a real tollway: login, cookies, CSRF, isolation, CSV."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.dashboard.support import (
    ADMIN_KEY,
    Browser,
    Gateway,
    dashboard_config,
    gateway,
    logged_in,
    new_tenant,
    wait_for_trace,
)
from tests.support.servers import run_tollway
from tollway.assembly import create_app
from tollway.config import parse_settings


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    path = tmp_path_factory.mktemp("dash") / "t.db"
    with gateway(f"sqlite:///{path}") as g:
        yield g


def test_pages_need_a_session(gw: Gateway) -> None:
    browser = Browser(gw.url)
    for path in ("/dashboard", "/dashboard/", "/dashboard/accounts", "/dashboard/traces",
                 "/dashboard/models", f"/dashboard/accounts/{gw.a.id}/ledger.csv"):
        reply = browser.get(path)
        assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/login"
    reply = browser.post(f"/dashboard/accounts/{gw.a.id}/keys", data={"name": "x"})
    assert reply.status_code == 401
    browser.cookies.set("tollway_dashboard", "e30.AAAA", path="/dashboard")
    assert browser.get("/dashboard/").status_code == 303  # a forged session


def test_login_sets_a_strict_http_only_expiring_cookie(gw: Gateway) -> None:
    browser = Browser(gw.url)
    reply = browser.login(ADMIN_KEY)
    assert reply.status_code == 303
    cookie = next(c for c in reply.headers.get_list("set-cookie")
                  if c.startswith("tollway_dashboard="))
    flags = [part.strip() for part in cookie.split(";")]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/dashboard" in flags
    assert any(f.startswith("Max-Age=") and int(f[8:]) > 0 for f in flags)
    assert ADMIN_KEY not in cookie
    page = browser.get("/dashboard/")
    assert page.status_code == 200 and "Overview" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # logging out needs the CSRF token too, then the cookie is cleared
    assert browser.post("/dashboard/logout", data={}).status_code == 403
    out = browser.post("/dashboard/logout", data={"csrf": browser.csrf("/dashboard/")})
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


def test_a_wrong_key_or_a_missing_login_token_is_refused(gw: Gateway) -> None:
    browser = Browser(gw.url)
    bad = browser.login("tw-not-a-key")
    assert bad.status_code == 401 and "not accepted" in bad.text
    assert "tw-not-a-key" not in bad.text
    assert not any(c.startswith("tollway_dashboard=") for c in bad.headers.get_list("set-cookie"))
    other = Browser(gw.url)  # no pre-login cookie: a login form posted from elsewhere
    forged = other.post("/dashboard/login", data={"csrf": browser.csrf("/dashboard/login"),
                                                  "key": ADMIN_KEY})
    assert forged.status_code == 403


def test_state_changing_forms_need_this_sessions_csrf_token(gw: Gateway) -> None:
    admin = logged_in(gw.url, ADMIN_KEY)
    other = logged_in(gw.url, ADMIN_KEY)
    before = gw.admin().get(f"/admin/accounts/{gw.a.id}/ledger").json()["data"]
    path = f"/dashboard/accounts/{gw.a.id}/credit"
    assert admin.post(path, data={"amount_usd": "1"}).status_code == 403
    wrong = other.csrf("/dashboard/")
    assert admin.post(path, data={"amount_usd": "1", "csrf": wrong}).status_code == 403
    keys = f"/dashboard/accounts/{gw.a.id}/keys"
    assert admin.post(keys, data={"csrf": wrong}).status_code == 403
    assert gw.admin().get(f"/admin/accounts/{gw.a.id}/ledger").json()["data"] == before
    right = admin.csrf("/dashboard/")
    assert admin.post(path, data={"amount_usd": "1", "csrf": right}).status_code == 303


def test_admin_credits_and_adjusts_to_the_micro_dollar(gw: Gateway) -> None:
    admin = logged_in(gw.url, ADMIN_KEY)
    api = gw.admin()
    start = api.get(f"/admin/accounts/{gw.b.id}").json()["balance_usd"]
    token = admin.csrf(f"/dashboard/accounts/{gw.b.id}")
    done = admin.post(f"/dashboard/accounts/{gw.b.id}/credit",
                      data={"csrf": token, "amount_usd": "1.000001", "note": "top-up"})
    assert done.status_code == 303
    adjust = admin.post(f"/dashboard/accounts/{gw.b.id}/credit",
                        data={"csrf": token, "amount_usd": "-0.5", "kind": "adjustment"})
    assert adjust.status_code == 303
    from decimal import Decimal

    after = api.get(f"/admin/accounts/{gw.b.id}").json()["balance_usd"]
    assert Decimal(after) - Decimal(start) == Decimal("0.500001")
    bad = admin.post(f"/dashboard/accounts/{gw.b.id}/credit",
                     data={"csrf": token, "amount_usd": "lots"})
    assert bad.status_code == 400 and "amount_usd" in bad.text
    page = admin.get(f"/dashboard/accounts/{gw.b.id}")
    assert "1.000001" in page.text and "top-up" in page.text


def test_an_account_sees_only_its_own_data(gw: Gateway) -> None:
    mine = gw.chat(gw.a, "alpha's secret question")
    theirs = gw.chat(gw.b, "beta's secret question")
    alpha = logged_in(gw.url, gw.a.key)
    admin = logged_in(gw.url, ADMIN_KEY)
    assert wait_for_trace(admin, theirs).status_code == 200
    page = wait_for_trace(alpha, mine)
    assert page.status_code == 200 and "alpha&#39;s secret question" in page.text  # stored body
    # another account's trace, account page, CSV, key: as if they did not exist
    assert alpha.get(f"/dashboard/traces/{theirs}").status_code == 404
    assert alpha.get(f"/dashboard/accounts/{gw.b.id}").status_code == 404
    assert alpha.get(f"/dashboard/accounts/{gw.b.name}").status_code == 404
    assert alpha.get(f"/dashboard/accounts/{gw.b.id}/ledger.csv").status_code == 404
    token = alpha.csrf("/dashboard/")
    assert alpha.post(f"/dashboard/keys/{gw.b.key_id}/revoke",
                      data={"csrf": token}).status_code == 404
    assert alpha.post(f"/dashboard/accounts/{gw.b.id}/keys",
                      data={"csrf": token}).status_code == 404
    assert alpha.post(f"/dashboard/accounts/{gw.a.id}/credit",
                      data={"csrf": token, "amount_usd": "100"}).status_code == 403
    # searches ignore an account filter and find only alpha's traces
    listing = alpha.get("/dashboard/traces", params={"account": gw.b.id})
    assert mine in listing.text and theirs not in listing.text
    found = alpha.get("/dashboard/traces", params={"request_id": theirs})
    assert "No trace has that id" in found.text
    assert alpha.get("/dashboard/accounts").headers["location"] == f"/dashboard/accounts/{gw.a.id}"
    overview = alpha.get("/dashboard/", params={"account": gw.b.id, "group": "account"})
    assert overview.status_code == 200 and "beta" not in overview.text
    # the admin sees both
    listing = admin.get("/dashboard/traces")
    assert mine in listing.text and theirs in listing.text
    assert admin.get(f"/dashboard/traces/{mine}").status_code == 200
    beta_only = admin.get("/dashboard/traces", params={"account": gw.b.name})
    assert theirs in beta_only.text and mine not in beta_only.text


def test_the_trace_page_shows_attempts_timeline_usage_and_cost(gw: Gateway) -> None:
    request_id = gw.chat(gw.a, "trace me", model="sim-lorem")
    admin = logged_in(gw.url, ADMIN_KEY)
    page = wait_for_trace(admin, request_id)
    assert page.status_code == 200
    text = page.text
    for part in ("Route attempts", "sim/lorem", "Timeline", "first token", "completion_tokens",
                 "total_cost_usd", "Firewall verdicts", "Platform tool calls"):
        assert part in text, part
    ledger = gw.admin().get(f"/admin/accounts/{gw.a.id}/ledger").json()["data"]
    debit = next(e for e in ledger if e.get("request_id") == request_id)
    assert debit["total_cost_usd"] in text  # the trace's cost is the ledger's debit


def test_keys_are_created_once_and_revoked(gw: Gateway) -> None:
    alpha = logged_in(gw.url, gw.a.key)
    token = alpha.csrf(f"/dashboard/accounts/{gw.a.id}")
    made = alpha.post(f"/dashboard/accounts/{gw.a.id}/keys", data={"csrf": token, "name": "ci"})
    assert made.status_code == 201
    secret = made.text.split('id="new-key">')[1].split("<")[0]
    assert secret.startswith("tw-")
    again = alpha.get(f"/dashboard/accounts/{gw.a.id}")
    assert secret not in again.text and secret[:11] in again.text  # shown once; prefix listed
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    client.chat.completions.create(model="sim-echo", messages=[{"role": "user", "content": "x"}])
    key_id = next(k["id"] for k in gw.admin().get(f"/admin/accounts/{gw.a.id}/keys").json()["data"]
                  if k["name"] == "ci")
    revoked = alpha.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf": token})
    assert revoked.status_code == 303
    deadline = time.monotonic() + 10  # the gateway's key cache refreshes every 2 s
    while True:
        try:
            client.chat.completions.create(model="sim-echo",
                                           messages=[{"role": "user", "content": "x"}])
        except openai.AuthenticationError:
            break
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.3)


def test_a_session_ends_when_its_key_is_revoked(gw: Gateway) -> None:
    api = gw.admin()
    key = api.post(f"/admin/accounts/{gw.a.id}/keys", json={"name": "short"}).json()
    browser = logged_in(gw.url, key["key"])
    assert browser.get("/dashboard/").status_code == 200
    api.post(f"/admin/keys/{key['id']}/revoke")
    assert browser.get("/dashboard/").status_code == 303
    assert browser.login(key["key"]).status_code == 401


def test_ledger_csv_matches_the_ledger_and_is_filtered(gw: Gateway) -> None:
    api = gw.admin()
    api.post(f"/admin/accounts/{gw.b.id}/credit",
             json={"amount_usd": "0.25", "note": "=HYPERLINK(\"http://evil\")"})
    gw.chat(gw.b, "spend a little")
    admin = logged_in(gw.url, ADMIN_KEY)
    reply = admin.get(f"/dashboard/accounts/{gw.b.id}/ledger.csv")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    ledger = api.get(f"/admin/accounts/{gw.b.id}/ledger", params={"limit": 100}).json()["data"]
    assert [(int(r["id"]), r["kind"], r["amount_usd"]) for r in rows] == [
        (e["id"], e["kind"], e["amount_usd"]) for e in ledger]
    assert any(r["note"] == "'=HYPERLINK(\"http://evil\")" for r in rows)  # no formula
    credits = list(csv.DictReader(io.StringIO(
        admin.get(f"/dashboard/accounts/{gw.b.id}/ledger.csv", params={"kind": "credit"}).text)))
    assert credits and {r["kind"] for r in credits} == {"credit"}
    beta = logged_in(gw.url, gw.b.key)
    own = beta.get(f"/dashboard/accounts/{gw.b.id}/ledger.csv")
    assert own.status_code == 200 and own.text == reply.text
    assert admin.get(f"/dashboard/accounts/{gw.b.id}/ledger.csv",
                     params={"kind": "bogus"}).status_code == 400


def test_models_and_static_assets_are_served_from_the_package(gw: Gateway) -> None:
    admin = logged_in(gw.url, ADMIN_KEY)
    models = admin.get("/dashboard/models")
    assert models.status_code == 200 and "sim-echo" in models.text and "healthy" in models.text
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "dashboard.js", "dashboard.css",
                 "uPlot.LICENSE.txt"):
        asset = httpx.get(f"{gw.url}/dashboard/static/{name}")  # public, no session needed
        assert asset.status_code == 200 and len(asset.content) > 100, name
    assert httpx.get(f"{gw.url}/dashboard/static/../app.py").status_code in (303, 404)
    assert admin.get("/dashboard/nope").status_code == 404


def test_keys_never_reach_the_logs(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    browser = logged_in(gw.url, gw.a.key)
    browser.get("/dashboard/")
    browser.get(f"/dashboard/accounts/{gw.a.id}")
    logged_in(gw.url, ADMIN_KEY).get("/dashboard/traces")
    assert gw.a.key not in caplog.text and ADMIN_KEY not in caplog.text


def test_html_routes_stay_out_of_the_openapi_document(tmp_path: Path) -> None:
    from tests.dashboard.support import dashboard_config
    from tollway.api.openapi import openapi_document

    app = create_app(parse_settings(dashboard_config(f"sqlite:///{tmp_path / 'o.db'}")))
    assert not any(p.startswith("/dashboard") for _m, p, _a in app.route_table())
    assert not any(p.startswith("/dashboard") for p in openapi_document(app)["paths"])


def test_isolation_holds_on_postgresql_too(dsn: str) -> None:
    with gateway(dsn) as g:
        theirs = g.chat(g.b, "beta only")
        mine = g.chat(g.a, "alpha only")
        alpha = logged_in(g.url, g.a.key)
        assert wait_for_trace(alpha, mine).status_code == 200
        assert wait_for_trace(logged_in(g.url, ADMIN_KEY), theirs).status_code == 200
        assert alpha.get(f"/dashboard/traces/{theirs}").status_code == 404
        assert alpha.get(f"/dashboard/accounts/{g.b.id}").status_code == 404
        overview = alpha.get("/dashboard/", params={"range": "1h"})
        assert overview.status_code == 200 and "Requests" in overview.text
        admin = logged_in(g.url, ADMIN_KEY)
        assert "beta" in admin.get("/dashboard/", params={"group": "account"}).text


def test_bad_parameters_are_clear_errors_never_a_500(gw: Gateway) -> None:
    admin = logged_in(gw.url, ADMIN_KEY)
    for path, params in (("/dashboard/traces", {"since": "yesterday-ish"}),
                         ("/dashboard/traces", {"cursor": "%%%"}),
                         ("/dashboard/traces", {"status": "teapot"}),
                         (f"/dashboard/accounts/{gw.a.id}", {"before": "abc"}),
                         (f"/dashboard/accounts/{gw.a.id}", {"since": "1e999"})):
        reply = admin.get(path, params=params)
        assert reply.status_code == 400, (path, params, reply.status_code)
        assert "Something is not right" in reply.text and "Traceback" not in reply.text
    odd = admin.get("/dashboard/", params={"range": "forever", "bucket": "minute",
                                           "group": "galaxy"})
    assert odd.status_code == 200 and "last 24h" in odd.text
    assert admin.get("/dashboard/accounts/nobody").status_code == 404
    assert admin.put("/dashboard/login").status_code == 405
    token = admin.csrf("/dashboard/")
    huge = admin.post(f"/dashboard/accounts/{gw.a.id}/keys",
                      data={"csrf": token, "name": "x" * 70000})
    assert huge.status_code == 413


def test_a_new_gateway_tells_a_new_user_what_to_do(tmp_path: Path) -> None:
    with gateway(f"sqlite:///{tmp_path / 'new.db'}") as fresh:
        admin = logged_in(fresh.url, ADMIN_KEY)
        page = admin.get("/dashboard/")
        assert "No requests in this range yet" in page.text and "/v1/chat/completions" in page.text
        traces = admin.get("/dashboard/traces")
        assert "No traces match" in traces.text


def test_repeated_failed_logins_from_one_address_are_throttled(tmp_path: Path) -> None:
    with gateway(f"sqlite:///{tmp_path / 'th.db'}") as fresh:
        browser = Browser(fresh.url)
        codes = [browser.login(f"wrong-{i}").status_code for i in range(11)]
        assert codes == [401] * 10 + [429]
        assert browser.login(ADMIN_KEY).status_code == 429  # even the right key, for a while


def test_traces_kept_in_their_own_database_are_the_ones_shown(tmp_path: Path) -> None:
    """``tracing.database`` (traces in a file of their own): the dashboard's trace pages read
    them there, not from the main database, which holds none."""
    config = dashboard_config(f"sqlite:///{tmp_path / 'main.db'}")
    config["tracing"] = {**config["tracing"], "database": f"sqlite:///{tmp_path / 'traces.db'}"}
    with run_tollway(config) as url:
        admin_api = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        tenant = new_tenant(admin_api, "gamma")
        request_id = Gateway(url, tenant, tenant).chat(tenant, "kept elsewhere")
        admin = logged_in(url, ADMIN_KEY)
        assert wait_for_trace(admin, request_id).status_code == 200
        assert request_id in admin.get("/dashboard/traces").text
