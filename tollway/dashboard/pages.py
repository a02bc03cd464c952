"""The dashboard's pages: overview, accounts (ledger, CSV, credit, keys), traces, models.

Scoping rule: ``_scope(session, wanted)`` is the only way a handler picks the
account it reads. For an account's session it is always that account, and a page
about another account is a 404, exactly as if it did not exist.
"""

from __future__ import annotations

import csv
import io
import math
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from tollway.auth import KeyAuthenticator, key_json, parse_expiry
from tollway.billing.ledger import credit, entry_json, require_account
from tollway.dashboard.data import RANGES, account_view, overview
from tollway.dashboard.rollup import Rollups
from tollway.dashboard.session import Session
from tollway.dashboard.web import Page, WebRequest
from tollway.errors import InvalidRequest, NotFound, PermissionDenied
from tollway.storage import connect_database, open_storage
from tollway.storage.database import Database
from tollway.storage.sql import SqlStorage
from tollway.tracing.api import build_query, encode_cursor, parse_time
from tollway.tracing.store import TraceStore, open_trace_store

if TYPE_CHECKING:
    from tollway.config import Settings
    from tollway.dashboard.session import SessionSigner


class Shell(Protocol):
    """What the pages need from the dashboard around them (``routes.Dashboard``)."""

    settings: Settings
    signer: SessionSigner

    def render(self, template: str, status: int = 200, **context: Any) -> Page: ...

__all__ = ["Pages"]

P = "/dashboard"
KINDS = ("credit", "adjustment", "debit", "unsettled", "provider_overage")
LEDGER_PAGE = 50
CSV_MAX_ROWS = 100_000
_CSV_COLUMNS = ("id", "created_at", "kind", "amount_usd", "request_id", "model", "deployment",
                "prompt_tokens", "cached_tokens", "completion_tokens", "output_tokens",
                "base_cost_usd", "platform_fee_usd", "total_cost_usd", "partial", "note")


def _csv_cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "@", "\t", "\r") or (
        isinstance(value, str) and value[:1] == "-" and not _is_number(value)
    ):
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _iso(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Pages:
    """Page handlers over one store, one trace store and one key authenticator."""

    def __init__(self, dash: Shell) -> None:
        self.dash = dash
        self.settings = dash.settings
        self._store: SqlStorage | None = None
        self.traces: TraceStore | None = None
        self.keys: KeyAuthenticator | None = None
        self.rollups: Rollups | None = None
        self.trace_rollups: Rollups | None = None  # when traces have a database of their own
        self._trace_db: Database | None = None

    async def start(self) -> None:
        self._store = await open_storage(self.settings.database)
        self.keys = KeyAuthenticator(self._store, self.settings.billing)
        tracing = self.settings.tracing
        own = tracing.database not in (None, self.settings.database)
        if tracing.enabled:  # where the traces are kept: their own database, if they have one
            self.traces = await open_trace_store(
                tracing.database or self.settings.database, migrate=False
            )
        if tracing.enabled and own:  # each table's rollups beside it
            assert tracing.database is not None
            self._trace_db = await connect_database(tracing.database)
            self.trace_rollups = Rollups(self._trace_db, sources=("traces",))
            self.trace_rollups.start()
            self.rollups = Rollups(self._store.db, sources=("ledger",))
        else:
            self.rollups = Rollups(self._store.db)
        self.rollups.start()

    async def stop(self) -> None:
        if self.trace_rollups is not None:
            await self.trace_rollups.stop()
        if self._trace_db is not None:
            await self._trace_db.close()
        if self.rollups is not None:
            await self.rollups.stop()
        if self.traces is not None:
            await self.traces.close()
        if self._store is not None:
            await self._store.close()

    def store(self) -> SqlStorage:
        assert self._store is not None, "dashboard not started"
        return self._store

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", P + "/", self.overview),
            ("GET", P + "/accounts", self.accounts),
            ("GET", P + "/accounts/{account}", self.account),
            ("GET", P + "/accounts/{account}/ledger.csv", self.ledger_csv),
            ("POST", P + "/accounts/{account}/credit", self.credit),
            ("POST", P + "/accounts/{account}/keys", self.create_key),
            ("POST", P + "/keys/{key}/revoke", self.revoke_key),
            ("GET", P + "/traces", self.traces_page),
            ("GET", P + "/traces/{trace}", self.trace),
            ("GET", P + "/models", self.models),
        ]

    # -- helpers ----------------------------------------------------------------------
    def _render(self, template: str, session: Session, status: int = 200, **ctx: Any) -> Page:
        return self.dash.render(template, status, session=session,
                                csrf=self.dash.signer.csrf_token(session.nonce), **ctx)  # fmt: skip

    async def _scope(self, session: Session, wanted: str) -> Any:
        """The account a page may show: ``wanted`` for the admin, else only one's own."""
        account = await self.store().get_account(wanted)
        if account is None or (not session.is_admin and account.id != session.account_id):
            raise NotFound("No such account.")
        return account

    def _alias_of(self) -> dict[str, str]:
        """Deployment id → model, for deployments that serve one model only."""
        seen: dict[str, set[str]] = {}
        for alias, model in self.settings.models.items():
            for dep in model.deployments:
                seen.setdefault(dep.id, set()).add(alias)
        return {dep: next(iter(a)) for dep, a in seen.items() if len(a) == 1}

    async def _names(self, session: Session) -> dict[str, str]:
        if session.is_admin:
            return {a.id: a.name for a in await self.store().list_accounts()}
        account = await self.store().get_account(session.account_id or "")
        return {account.id: account.name} if account else {}

    # -- overview ---------------------------------------------------------------------
    async def overview(self, req: WebRequest, session: Session, _: dict[str, str]) -> Page:
        q = req.query
        account_id = session.account_id
        if session.is_admin and q.get("account"):
            account_id = (await self._scope(session, q["account"])).id
        names = await self._names(session)
        group = "account" if q.get("group") == "account" and account_id is None else "model"
        data = await overview(self.store(), self.traces, account_id=account_id,
                              range_name=q.get("range", "24h"), bucket_name=q.get("bucket"),
                              group=group, names=names, alias_of=self._alias_of(),
                              rollups=self.rollups,
                              trace_rollups=self.trace_rollups)  # fmt: skip
        chart = {"x": data["x"], "spend": {k: [m / 1e6 for m in v] for k, v in
                 data["spend"].items()}, "requests": data["requests"]}  # fmt: skip
        return self._render("overview.html", session, data=data, ranges=list(RANGES),
                            chart_json=orjson.dumps(chart).decode(), names=names,
                            account_filter=account_id if session.is_admin else None)  # fmt: skip

    # -- accounts ---------------------------------------------------------------------
    async def accounts(self, req: WebRequest, session: Session, _: dict[str, str]) -> Page:
        if not session.is_admin:
            return Page.redirect(f"{P}/accounts/{session.account_id}")
        rows = [account_view(a) for a in await self.store().list_accounts()]
        return self._render("accounts.html", session, accounts=rows)

    def _ledger_filters(self, q: dict[str, str]) -> dict[str, Any]:
        kind = q.get("kind") or ""
        if kind and kind not in KINDS:
            raise InvalidRequest(f"Unknown entry kind {kind!r}.", param="kind")
        before = q.get("before") or None
        if before is not None and not (before.isascii() and before.isdigit() and len(before) < 19):
            raise InvalidRequest("'before' must be an entry id.", param="before")
        return {
            "kinds": (kind,) if kind else (),
            "since": parse_time(q["since"], "since") if q.get("since") else None,
            "until": parse_time(q["until"], "until") if q.get("until") else None,
            "before": int(before) if before else None,
        }

    async def account(self, req: WebRequest, session: Session, params: dict[str, str],
                      new_key: dict[str, Any] | None = None, status: int = 200,
                      message: str | None = None) -> Page:  # fmt: skip
        acct = await self._scope(session, params["account"])
        filters = self._ledger_filters(req.query if req.method == "GET" else {})
        entries = await self.store().ledger_filtered(acct.id, limit=LEDGER_PAGE + 1, **filters)
        more = len(entries) > LEDGER_PAGE
        entries = entries[:LEDGER_PAGE]
        keys = [key_json(k) for k in await self.store().list_keys(acct.id)]
        query = {k: v for k, v in req.query.items() if k in ("kind", "since", "until") and v}
        return self._render(
            "account.html", session, status, account=account_view(acct), new_key=new_key,
            entries=[entry_json(e) for e in entries], more=more, query=query, kinds=KINDS,
            next_before=entries[-1].id if more and entries else None, keys=keys,
            message=message, csv_query="&".join(f"{k}={v}" for k, v in query.items()),
        )  # fmt: skip

    async def ledger_csv(self, req: WebRequest, session: Session, params: dict[str, str]) -> Page:
        acct = await self._scope(session, params["account"])
        filters = self._ledger_filters(req.query)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(_CSV_COLUMNS)
        rows = 0
        while rows < CSV_MAX_ROWS:
            batch = await self.store().ledger_filtered(acct.id, limit=1000, **filters)
            for item in batch:
                e = entry_json(item)
                usage = e.get("usage") or {}
                row = {**e, **usage, "created_at": _iso(item.created_at)}
                writer.writerow([_csv_cell(row.get(c)) for c in _CSV_COLUMNS])
            rows += len(batch)
            if len(batch) < 1000:
                break
            filters["before"] = batch[-1].id
        name = "".join(ch for ch in acct.name if ch.isalnum() or ch in "-_") or "account"
        return Page(200, out.getvalue(), "text/csv; charset=utf-8",
                    [("content-disposition", f'attachment; filename="ledger-{name}.csv"')])

    async def credit(self, req: WebRequest, session: Session, params: dict[str, str]) -> Page:
        if not session.is_admin:
            raise PermissionDenied("Only the admin can credit or adjust an account.")
        acct = await require_account(self.store(), params["account"])
        kind: Literal["credit", "adjustment"] = (
            "adjustment" if req.form.get("kind") == "adjustment" else "credit")
        await credit(self.store(), acct.id, req.form.get("amount_usd", ""),
                     note=req.form.get("note") or None, kind=kind)  # fmt: skip
        return Page.redirect(f"{P}/accounts/{acct.id}")

    async def create_key(self, req: WebRequest, session: Session, params: dict[str, str]) -> Page:
        acct = await self._scope(session, params["account"])
        assert self.keys is not None
        name = (req.form.get("name") or "").strip()[:200] or None
        expires = (req.form.get("expires") or "").strip()
        new = await self.keys.create_key(acct.id, name=name,
                                         expires_at=parse_expiry(expires) if expires else None)
        shown = key_json(new.key, new.secret)
        return await self.account(req, session, {"account": acct.id}, new_key=shown, status=201)

    async def revoke_key(self, req: WebRequest, session: Session, params: dict[str, str]) -> Page:
        key = await self.store().get_key(params["key"])
        if key is None or (not session.is_admin and key.account_id != session.account_id):
            raise NotFound("No such key.")
        assert self.keys is not None
        await self.keys.revoke(key.id)
        if key.id == session.key_id:  # revoked the key this session logged in with
            return Page.redirect(f"{P}/login")
        return Page.redirect(f"{P}/accounts/{key.account_id}")

    # -- traces -------------------------------------------------------------------------
    async def traces_page(self, req: WebRequest, session: Session, _: dict[str, str]) -> Page:
        q = {k: v for k, v in req.query.items() if v}
        found: list[tuple[int, dict[str, Any]]] = []
        more = False
        if self.traces is not None:
            wanted = q.get("request_id")
            scope = None if session.is_admin else session.account_id
            if wanted:
                record = await self.traces.get(wanted, scope)
                if record is not None:
                    return Page.redirect(f"{P}/traces/{record['id']}")
                return self._render("traces.html", session, traces=[], q=q, next_cursor=None,
                                    message="No trace has that id.", enabled=True)  # fmt: skip
            if session.is_admin and q.get("account"):
                q["account_id"] = (await self._scope(session, q["account"])).id
            q.setdefault("limit", "50")
            query = build_query(q, account_id=scope, admin=session.is_admin)
            found = await self.traces.find(query)
            more = len(found) == query.limit
        cursor = encode_cursor(found[-1][1]["received_at"], found[-1][0]) if more else None
        keep = {k: v for k, v in q.items() if k not in ("cursor", "limit", "account_id")}
        return self._render("traces.html", session, traces=[r for _, r in found], q=keep,
                            next_cursor=cursor, message=None, enabled=self.traces is not None,
                            names=await self._names(session))  # fmt: skip

    async def trace(self, req: WebRequest, session: Session, params: dict[str, str]) -> Page:
        record = None
        if self.traces is not None:
            scope = None if session.is_admin else session.account_id
            record = await self.traces.get(params["trace"], scope)
        if record is None:
            raise NotFound("No such trace.")
        timings = record.get("timings") or {}
        total = timings.get("total_ms") or 0.0
        marks = [(label, timings.get(f"{name}_ms")) for label, name in (
            ("admitted", "admitted"), ("upstream connected", "upstream_connected"),
            ("first token", "first_token"), ("last token", "last_token"), ("finished", "total"))]
        scale = 100.0 / total if total and math.isfinite(total) and total > 0 else 0.0
        timeline = [{"label": label, "ms": ms, "x": round(ms * scale, 2)}
                    for label, ms in marks if isinstance(ms, int | float)]  # fmt: skip
        bodies = record.pop("bodies", None)
        return self._render("trace.html", session, t=record, timeline=timeline,
                            bodies=None if bodies is None else orjson.dumps(
                                bodies, option=orjson.OPT_INDENT_2).decode())  # fmt: skip

    # -- models -------------------------------------------------------------------------
    async def models(self, req: WebRequest, session: Session, _: dict[str, str]) -> Page:
        health = getattr(req.router, "health", None)
        rows = []
        for alias, model in self.settings.models.items():
            for dep in model.deployments:
                record = None if health is None else health.get(dep.id)
                prices = dep.prices
                rows.append({
                    "alias": alias, "strategy": model.strategy, "id": dep.id,
                    "provider": dep.provider, "model": dep.model,
                    "known": record is not None, "max_in_flight": dep.max_in_flight,
                    "in_flight": record.in_flight if record else None,
                    "cooling": bool(health and health.cooling(dep.id)),
                    "ttft_ms": None if not record or record.ttft is None
                    else round(record.ttft * 1000),
                    "failures": len(record.failures) if record else None,
                    "prices": None if prices is None else {
                        "input": prices.input_per_mtok, "cached": prices.cached_input,
                        "output": prices.output_per_mtok},
                })  # fmt: skip
        return self._render("models.html", session, rows=rows)
