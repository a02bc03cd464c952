"""Plugs billing into the gateway's hooks: auth, admission, pricer, settler, routes, lifecycle.

``install(app)`` is called by ``tollway.features.install_features``. Billing is
on when ``settings.billing`` exists and is enabled (or a ``BillingConfig`` is
passed explicitly). The store opens at startup: migrations are applied, the
instance registers and orphaned reservations are released before the first
request; the key refresher and heartbeat run in the background.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tollway.admission import Billing, Hold, effective_output_cap
from tollway.api.account import AccountAPI
from tollway.api.admin import ADMIN_ROUTES, AdminAPI
from tollway.auth import AuthResult, KeyAuthenticator
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import ensure_demo_account
from tollway.billing.recovery import InstanceLease
from tollway.chunks import Usage
from tollway.context import RequestContext
from tollway.storage import open_storage
from tollway.storage.sql import SqlStorage

if TYPE_CHECKING:
    from tollway.app import TollwayApp
    from tollway.config import Settings

__all__ = ["BillingFeature", "billing_config", "install", "prepare_demo"]


def billing_config(settings: Settings) -> BillingConfig | None:
    """``settings.billing`` when present and enabled, else None."""
    config = getattr(settings, "billing", None)
    return config if isinstance(config, BillingConfig) and config.enabled else None


class BillingFeature:
    """Billing's per-app state; its methods are what the gateway hooks call."""

    def __init__(self, settings: Settings, config: BillingConfig) -> None:
        self.settings = settings
        self.config = config
        self.store: SqlStorage | None = None
        self.keys: KeyAuthenticator | None = None
        self.lease: InstanceLease | None = None
        self.billing: Billing | None = None
        self.account_api: AccountAPI | None = None
        self.admin_api: AdminAPI | None = None
        # extra fields of GET /v1/account: async (caller) -> dict of fields or None
        self.account_extras: list[Any] = []

    async def start(self) -> None:
        """Open storage (migrating), register this instance, recover orphans, start refreshers."""
        self.store = await open_storage(self.settings.database)
        self.keys = KeyAuthenticator(self.store, self.config)
        self.lease = InstanceLease(self.store, self.config)
        await self.lease.start()
        self.billing = Billing(self.store, self.config, self.lease.id)
        self.keys.start()
        self.account_api = AccountAPI(self.store, self.account_extras)
        self.admin_api = AdminAPI(self.store, self.keys, self.config)

    async def stop(self) -> None:
        """Stop refreshers, deregister, close storage (after settlements drained)."""
        if self.keys is not None:
            await self.keys.stop()
        if self.lease is not None:
            await self.lease.stop()
        if self.store is not None:
            await self.store.close()

    async def authenticate(self, authorization: str | None) -> AuthResult:
        """Gateway ``authenticate`` hook."""
        assert self.keys is not None, "billing not started"
        return await self.keys.authenticate(authorization)

    async def admit(self, ctx: RequestContext) -> None:
        """Gateway admission hook: fix the output cap, reserve, or raise 402."""
        assert self.billing is not None and ctx.request is not None
        model = self.settings.models[ctx.requested_model or ctx.request.model]
        if ctx.request.max_output_tokens is None:
            # Adapters send request.max_output_tokens upstream: make the cap explicit.
            ctx.request.max_output_tokens = min(
                effective_output_cap(ctx.request, d, self.config) for d in model.deployments
            )
        await self.billing.admit(ctx, model.deployments)

    def pricer(self, usage: Usage, ctx: RequestContext) -> dict[str, Any] | None:
        """Gateway pricer: the cost figures the final usage carries (= the debit)."""
        if self.billing is None or not isinstance(ctx.reservation, Hold):
            return None
        return self.billing.cost_of(ctx).usage_cost()

    async def settle(self, ctx: RequestContext) -> None:
        """Gateway settler."""
        if self.billing is not None:
            await self.billing.settle(ctx)


def install(app: TollwayApp, config: BillingConfig | None = None) -> BillingFeature | None:
    """Wire billing into ``app`` (no-op when billing is not configured)."""
    config = config or billing_config(app.settings)
    if config is None or not config.enabled:
        return None
    feature = BillingFeature(app.settings, config)
    gw = app.gateway
    gw.authenticate = feature.authenticate
    gw.admission.append(feature.admit)
    gw.pricer = feature.pricer
    gw.settlers.append(feature.settle)
    gw.on_start.append(feature.start)
    gw.on_stop.append(feature.stop)

    def bound(api: str, name: str) -> Any:
        async def call(request: dict[str, Any]) -> tuple[int, Any]:
            handler = getattr(getattr(feature, api), name)
            result: tuple[int, Any] = await handler(request)
            return result

        return call

    app.add_route("GET", "/v1/account", bound("account_api", "get_account"), "key")
    app.add_route("GET", "/v1/ledger", bound("account_api", "get_ledger"), "key")
    for method, pattern, name in ADMIN_ROUTES:
        app.add_route(method, pattern, bound("admin_api", name), "admin")
    return feature


def prepare_demo(settings: Settings, config: BillingConfig | None = None) -> str | None:
    """Create the demo account (with ``demo_credit_usd``) if needed; return a fresh key."""
    config = config or billing_config(settings)
    if config is None:
        return None

    async def go() -> str:
        store = await open_storage(settings.database)
        try:
            _, new = await ensure_demo_account(store, KeyAuthenticator(store, config), config)
        finally:
            await store.close()
        return new.secret

    return asyncio.run(go())
