"""The billing plugin: auth, admission, pricer, settler (``Phase.MONEY``), routes, CLI.

``BillingPlugin().register(host)`` adds nothing unless ``settings.billing`` is
enabled (or a ``BillingConfig`` is passed explicitly). The store opens at startup:
migrations are applied, the instance registers and orphaned reservations are
released before the first request; the key refresher and heartbeat run in the
background. The key authenticator itself is core (``tollway.auth``): billing owns
the keys' store, so it is what registers it.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from tollway.auth import AuthResult, KeyAuthenticator
from tollway.billing.account_api import AccountAPI
from tollway.billing.admin_routes import ADMIN_ROUTES
from tollway.billing.admission import Billing, Hold, effective_output_cap
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import ensure_demo_account
from tollway.billing.recovery import InstanceLease
from tollway.chunks import Usage
from tollway.context import RequestContext
from tollway.plugins.contract import Access, Host, Phase, Route
from tollway.storage import open_storage
from tollway.storage.base import ReservationStore
from tollway.storage.sql import SqlStorage

if TYPE_CHECKING:
    from tollway.billing.admin_api import AdminAPI
    from tollway.billing.balance_lease import BalanceLeases
    from tollway.config import Settings

__all__ = ["BillingFeature", "BillingPlugin", "billing_config", "prepare_demo"]


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
        self.leases: BalanceLeases | None = None
        self.billing: Billing | None = None
        self.account_api: AccountAPI | None = None
        self._admin_api: AdminAPI | None = None  # made by the first admin request
        # GET /v1/account's extra fields: the host's AccountFields hooks (e.g. spend caps)
        self.extra_account_fields: Any = None

    async def start(self) -> None:
        """Open storage (migrating), register this instance, recover orphans, start refreshers."""
        # no tokenizer here: admission reserves against a byte bound of the prompt and
        # loads the tokenizer (~50 MB, in a thread) only when it needs an exact count
        self.store = await open_storage(self.settings.database)
        self.keys = KeyAuthenticator(self.store, self.config)
        self.lease = InstanceLease(self.store, self.config)
        await self.lease.start()
        reservations: ReservationStore = self.store
        if self.config.balance_lease:  # (its module loaded only then)
            from tollway.billing.balance_lease import BalanceLeases

            self.leases = BalanceLeases(
                self.store, self.lease.id,
                lease_requests=self.config.lease_requests,
                idle_seconds=self.config.lease_idle_seconds,
                max_age_seconds=self.config.lease_max_age_seconds,
            )  # fmt: skip
            self.leases.start()
            self.lease.on_judged_dead = self.leases.retire_all
            reservations = self.leases
        self.billing = Billing(reservations, self.config, self.lease.id)
        self.keys.start()
        self.account_api = AccountAPI(self.store, self.extra_account_fields)

    @property
    def admin_api(self) -> AdminAPI:
        """The admin API, made (and its module loaded) by the first admin request."""
        api = self._admin_api
        if api is None:
            from tollway.billing.admin_api import AdminAPI

            assert self.store is not None and self.keys is not None, "billing not started"
            api = self._admin_api = AdminAPI(self.store, self.keys, self.config)
        return api

    async def stop(self) -> None:
        """Stop refreshers, deregister, close storage (after settlements drained)."""
        if self.keys is not None:
            await self.keys.stop()
        if self.leases is not None:
            await self.leases.close()  # given back before this instance deregisters
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


class BillingPlugin:
    """Billing as a plugin; ``config`` overrides ``settings.billing`` (tests)."""

    name = "billing"

    def __init__(self, config: BillingConfig | None = None) -> None:
        self.config = config
        self.feature: BillingFeature | None = None  # the running feature, once registered

    def register(self, host: Host) -> None:
        config = self.config or billing_config(host.settings)
        if config is None or not config.enabled:
            return
        self.feature = feature = BillingFeature(host.settings, config)
        feature.extra_account_fields = host.extra_account_fields
        host.authenticator(feature.authenticate)
        host.admitter(feature.admit, Phase.MONEY)
        host.pricer(feature.pricer)
        host.settler(feature.settle, Phase.MONEY)
        host.on_start(feature.start)
        host.on_stop(feature.stop)

        def bound(api: str, name: str) -> Any:
            async def call(request: dict[str, Any]) -> tuple[int, Any]:
                handler = getattr(getattr(feature, api), name)
                result: tuple[int, Any] = await handler(request)
                return result

            return call

        from tollway.billing.openapi import OPERATIONS as DOCS

        routes: list[tuple[str, str, str, str, Access]] = [
            ("GET", "/v1/account", "account_api", "get_account", "key"),
            ("GET", "/v1/ledger", "account_api", "get_ledger", "key"),
            *((m, p, "admin_api", n, "admin") for m, p, n in ADMIN_ROUTES),
        ]
        for method, pattern, api, name, access in routes:
            handler = bound(api, name)
            host.route(Route(method, pattern, handler, access, DOCS[(method, pattern)]))

    def cli(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """``accounts``, ``keys``, ``credit``, ``ledger``, ``audit``, ``db``."""
        from tollway.billing import cli as cli_billing

        cli_billing.register(subparsers)

    def prepare_demo(self, settings: Settings) -> str | None:
        """The demo's account and a fresh key for it (None when billing is off)."""
        return prepare_demo(settings, self.config)


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
