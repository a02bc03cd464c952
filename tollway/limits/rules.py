"""Which limits apply to a request: the config's, with the stored ones merged over them.

Key scope: ``limits.defaults``, then ``limits.keys[<name or id>]``, then the key's
stored limits. Account scope: ``limits.accounts[<name or id>]``, then the
account's stored limits. A ``Plan`` per key (cached until a stored limit changes)
answers the hot-path questions with dict lookups: may it use this model, which
rate checks apply, which spend caps hold.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tollway.limits.caps import Cap, period_bounds
from tollway.limits.config import LimitsConfig, LimitSpec
from tollway.limits.counters import Check

__all__ = ["Plan", "Rules"]

_MICROS = 1_000_000


@dataclass(slots=True)
class Plan:
    """The limits of one key (and its account), with per-alias answers cached."""

    key_id: str
    account_id: str
    key: LimitSpec
    account: LimitSpec
    _allowed: dict[str, bool] = field(default_factory=dict)
    _checks: dict[str, tuple[Check, ...]] = field(default_factory=dict)
    _caps: tuple[float, tuple[Cap, ...]] | None = None  # (valid until, caps)
    empty: bool = False  # no limit at all: admission returns at once

    def __post_init__(self) -> None:
        self.empty = self.key.is_empty() and self.account.is_empty()

    def allows(self, alias: str) -> bool:
        """Whether both the key's and the account's model patterns (if any) match ``alias``."""
        ok = self._allowed.get(alias)
        if ok is None:
            ok = all(
                spec.models is None or any(fnmatch.fnmatchcase(alias, p) for p in spec.models)
                for spec in (self.key, self.account)
            )
            self._allowed[alias] = ok
        return ok

    def checks(self, alias: str) -> tuple[Check, ...]:
        """The rate checks of a request for ``alias``: key, account, then per model."""
        found = self._checks.get(alias)
        if found is None:
            out = []
            for scope, subject, spec in (
                ("key", self.key_id, self.key), ("account", self.account_id, self.account)
            ):
                if spec.rpm or spec.tpm or spec.max_concurrent:
                    out.append(Check(f"{scope}:{subject}", scope, spec.rpm, spec.tpm,
                                     spec.max_concurrent))  # fmt: skip
            for scope, subject, spec in (
                ("key", self.key_id, self.key), ("account", self.account_id, self.account)
            ):
                m = spec.per_model.get(alias)
                if m is not None and (m.rpm or m.tpm or m.max_concurrent):
                    out.append(Check(f"{scope}_model:{subject}:{alias}", f"{scope}_model",
                                     m.rpm, m.tpm, m.max_concurrent))  # fmt: skip
            found = self._checks[alias] = tuple(out)
        return found

    def caps(self, now: float) -> tuple[Cap, ...]:
        """The spend caps in force now (key first, then account: the lock order)."""
        cached = self._caps
        if cached is not None and now < cached[0]:
            return cached[1]
        out = []
        until = float("inf")
        for scope, subject, spec in (
            ("key", self.key_id, self.key), ("account", self.account_id, self.account)
        ):
            if spec.spend_cap_usd is None:
                continue
            start, reset = period_bounds(spec.spend_period, now)
            until = min(until, reset or until)
            out.append(Cap(scope, subject, spec.spend_period, start, reset,
                           int(spec.spend_cap_usd * _MICROS)))  # fmt: skip
        self._caps = (until, tuple(out))
        return self._caps[1]


KeyName = Callable[[str], Awaitable[str | None]]
StoredLoader = Callable[[str, str], Awaitable[dict[tuple[str, str], LimitSpec]]]


class Rules:
    """Resolves and caches each key's ``Plan``; ``apply_changes`` drops what changed."""

    def __init__(
        self,
        config: LimitsConfig,
        stored: dict[tuple[str, str], LimitSpec] | None = None,
        key_name: KeyName | None = None,
        load: StoredLoader | None = None,
    ) -> None:
        self.config = config
        self.stored = dict(stored or {})
        self._key_name = key_name
        self._load = load  # a key seen first re-reads its and its account's stored limits
        self._plans: dict[str, Plan] = {}
        self.loaded_at = time.time()

    def apply_changes(self, changed: dict[tuple[str, str], LimitSpec]) -> None:
        if changed:
            self.stored.update(changed)
            self._plans.clear()

    async def plan(self, key_id: str, account_id: str, account_name: str) -> Plan:
        found = self._plans.get(key_id)
        if found is not None:
            return found
        if self._load is not None:  # a key created a moment ago is limited from its first use
            for subject in (("key", key_id), ("account", account_id)):
                self.stored.pop(subject, None)
            self.stored.update(await self._load(key_id, account_id))
        cfg = self.config
        key_spec = cfg.defaults
        named = cfg.keys.get(key_id)
        if named is None and cfg.keys and self._key_name is not None:
            name = await self._key_name(key_id)
            named = cfg.keys.get(name) if name else None
        key_spec = key_spec.merged(named).merged(self.stored.get(("key", key_id)))
        account_spec = (
            cfg.accounts.get(account_id) or cfg.accounts.get(account_name) or LimitSpec()
        ).merged(self.stored.get(("account", account_id)))
        plan = Plan(key_id, account_id, key_spec, account_spec)
        self._plans[key_id] = plan
        return plan
