"""Tenant controls as a plugin (``tollway.plugins`` contract): ``LimitsPlugin``.

Registers, when billing is on (limits need keys and accounts): an admitter in
``Phase.FILTER`` (before billing's reservation in ``Phase.MONEY``: model access → 403,
rate checks → 429, the spend caps handed to the reservation in ``ctx.spend_caps``), a
settler in ``Phase.MONEY`` (after billing's settlement, before the trace: concurrency
slots released, output tokens added to tpm, on every path), the ``/v1/models``
filter, the caller's spend caps in ``GET /v1/account``, the admin routes and the
lifecycle (its own database connection, Redis).
"""

from __future__ import annotations

import argparse
from typing import Any

from tollway.limits.admin import LIMIT_ROUTES, LimitsAdmin
from tollway.limits.feature import LimitsFeature
from tollway.limits.openapi import OPERATIONS
from tollway.plugins.contract import Host, Phase, Route

__all__ = ["LimitsPlugin"]


class LimitsPlugin:
    """Rate limits, spend caps and model access per key and account."""

    name = "limits"

    def __init__(self) -> None:
        self.feature: LimitsFeature | None = None  # the running feature, once registered

    def register(self, host: Host) -> None:
        settings = host.settings
        if not settings.billing.enabled:
            return  # no keys: nothing to limit
        self.feature = feature = LimitsFeature(settings)
        host.admitter(feature.admit, Phase.FILTER)
        host.settler(feature.settle, Phase.MONEY)
        host.model_filter(feature.models_for)
        host.account_fields(feature.account_fields)
        host.on_start(feature.start)
        host.on_stop(feature.stop)
        admin = LimitsAdmin(feature)
        for method, pattern, name in LIMIT_ROUTES:
            host.route(Route(method, pattern, getattr(admin, name), "admin",
                             OPERATIONS[(method, pattern)]))  # fmt: skip

    def cli(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """Limits flags on billing's ``keys create``/``keys list``; ``keys update`` and
        ``accounts limits`` (after billing's commands: plugin order)."""
        from tollway.limits import cli as cli_limits

        cli_limits.extend(subparsers)
