"""Tenant controls' per-app state (``LimitsFeature``); ``plugin.LimitsPlugin`` registers its
methods as the gateway's hooks.

Hooks: an admission step that runs *before* billing's (model access → 403, rate
checks → 429, spend caps handed to billing's reservation via ``ctx.spend_caps``),
a settler that releases concurrency slots and adds output tokens to tpm (it runs
on every path: success, upstream failure, client disconnect, refusal), the
``x-ratelimit-*`` headers via ``ctx.response_headers``, the ``/v1/models`` filter,
the caller's remaining budget in ``GET /v1/account`` and the admin routes.
Limits need billing (keys and accounts live in its database); they open their own
connection to that database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from tollway.auth import AuthResult
from tollway.limits.config import usd_text
from tollway.limits.counters import Check, Counters, LocalCounters
from tollway.limits.headers import model_not_allowed, rate_headers, rate_limited
from tollway.limits.rules import Rules
from tollway.limits.store import all_limits, changed_since, limits_of

if TYPE_CHECKING:
    from tollway.config import Settings

__all__ = ["LimitsFeature"]

log = logging.getLogger("tollway.limits")

_SKEW_OVERLAP = 5.0


class LimitsFeature:
    """Tenant controls' per-app state; its methods are what the gateway hooks call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.limits
        self.store: Any = None
        self.rules = Rules(self.config)
        self.counters: Counters = LocalCounters()
        self._task: asyncio.Task[None] | None = None
        self._since = 0.0

    @property
    def _db(self) -> Any:
        assert self.store is not None, "limits not started"
        return self.store.db

    async def start(self) -> None:
        """Open the database, load the stored limits, connect Redis, start the refresher."""
        from tollway.storage import open_storage

        self.store = store = await open_storage(self.settings.database)

        async def key_name(key_id: str) -> str | None:
            key = await store.get_key(key_id)
            return key.name if key is not None else None

        self._since = time.time()
        db = self._db

        async def load(key_id: str, account_id: str) -> dict[tuple[str, str], Any]:
            return await limits_of(db, key_id, account_id)

        self.rules = Rules(self.config, await all_limits(db), key_name, load)
        if self.settings.redis:
            from tollway.limits.redis_counters import RedisCounters

            counters = RedisCounters(
                self.settings.redis, on_store_error=self.config.on_store_error,
                lease_seconds=self.config.concurrency_lease_seconds,
            )  # fmt: skip
            counters.start()
            self.counters = counters
        self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.counters.close()
        if self.store is not None:
            await self.store.close()

    async def refresh(self) -> None:
        """Pick up limits changed anywhere (CLI, admin API, another instance)."""
        started = time.time()
        changed = await changed_since(self._db, self._since - _SKEW_OVERLAP)
        self._since = started
        self.rules.apply_changes(changed)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_interval_seconds)
            try:
                await self.refresh()
            except Exception:  # keep refreshing
                log.exception("limits refresh failed")

    @staticmethod
    def _hit(ctx: Any, scope: str, limit: str, **extra: Any) -> None:
        """Record the refusal for the trace and ``tollway_rate_limited_total``."""
        ctx.limit_hit = {"scope": scope, "limit": limit, **extra}

    async def admit(self, ctx: Any) -> None:
        """Admission (before billing's): model access, rate checks, spend caps."""
        auth = ctx.account
        if not isinstance(auth, AuthResult):
            return
        plan = await self.rules.plan(auth.key_id, auth.account_id, auth.account_name)
        if plan.empty:
            return
        alias = ctx.requested_model
        if not plan.allows(alias):
            self._hit(ctx, "model", "model_access", model=alias)
            raise model_not_allowed(alias)
        checks = plan.checks(alias)
        if checks:
            tokens = await _prompt_tokens(ctx) if any(c.tpm for c in checks) else 0
            decision = await self.counters.acquire(checks, tokens, ctx.request_id)
            ctx.response_headers.extend(rate_headers(decision))
            if decision.refused is not None:
                check, limit = decision.refused
                self._hit(ctx, check.scope, limit, retry_after=round(decision.retry_after, 3))
                raise rate_limited(decision, alias, tokens)
            ctx.limits = checks
        caps = plan.caps(time.time())
        if caps:
            ctx.spend_caps = caps

    async def settle(self, ctx: Any) -> None:
        """Release concurrency slots; add the output tokens to tpm (every path, once)."""
        checks: tuple[Check, ...] | None = ctx.limits
        if not checks:
            return
        ctx.limits = None
        usage = ctx.usage
        tokens = usage.output_tokens if usage is not None and any(c.tpm for c in checks) else 0
        await self.counters.release(checks, ctx.request_id, tokens)

    async def models_for(self, auth: Any, aliases: list[str]) -> list[str]:
        if not isinstance(auth, AuthResult):
            return aliases
        plan = await self.rules.plan(auth.key_id, auth.account_id, auth.account_name)
        return [a for a in aliases if plan.allows(a)]

    async def account_fields(self, auth: Any) -> dict[str, Any] | None:
        """``{"spend_caps": …}`` for ``GET /v1/account`` when the caller has caps."""
        if not isinstance(auth, AuthResult):
            return None
        caps = await self.budget(auth)
        return {"spend_caps": caps} if caps else None

    async def budget(self, auth: AuthResult) -> dict[str, Any] | None:
        """The caller's spend caps with what is left of each (for ``GET /v1/account``)."""
        plan = await self.rules.plan(auth.key_id, auth.account_id, auth.account_name)
        caps = plan.caps(time.time())
        if not caps:
            return None
        usd_str = usd_text
        states = await self.store.cap_states(caps)
        return {
            s.cap.scope: {
                "period": s.cap.period,
                "cap_usd": usd_str(s.cap.cap_micros),
                "spent_usd": usd_str(s.spent_micros),
                "reserved_usd": usd_str(s.reserved_micros),
                "remaining_usd": usd_str(s.remaining_micros),
                "resets_at": int(s.cap.resets_at) if s.cap.resets_at is not None else None,
            }
            for s in states
        }


async def _prompt_tokens(ctx: Any) -> int:
    """The prompt's exact token count for tpm (the tokenizer loads off the loop once)."""
    from tollway.tokens import count_prompt_tokens, load

    await load()
    request = ctx.request
    return int(count_prompt_tokens(request.messages, request.tools))
