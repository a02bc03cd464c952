"""Rate-limit counters in Redis, shared by every worker and instance.

The same token-bucket algorithm as ``LocalCounters`` runs in one Lua script per
step (``EVALSHA`` over ``tollway.limits.resp``, whose commands of one event-loop
iteration share one write: one round trip at admission, one at settlement), timed by the
Redis server's clock so instances' clocks do not matter. Buckets are hashes
(level, time) that expire once they would be full again; concurrency slots are a
sorted set of request ids scored by a lease deadline, which the owning instance renews
every third of ``limits.concurrency_lease_seconds`` while the request runs: the
slots of an instance that died are freed within one lease.

When Redis does not answer, ``on_store_error`` decides: ``allow`` (the default)
counts in a local fallback limiter (exact per process only), ``deny`` refuses the
request with a 503; either way a log line and ``tollway_limit_store_errors_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from tollway.errors import GatewayError
from tollway.limits.counters import (
    CONCURRENCY,
    RPM,
    TPM,
    Check,
    Decision,
    LocalCounters,
    _decision,
)
from tollway.limits.resp import RedisError, RespClient, encode_args

__all__ = ["LimitStoreUnavailable", "RedisCounters"]

log = logging.getLogger("tollway.limits")

_PREFIX = "tollway:rl:"

ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, member = tonumber(ARGV[#ARGV - 1]), ARGV[#ARGV]
local function level(key, cap)
  local h = redis.call('HMGET', key, 'l', 't')
  if not h[1] then return cap end
  return math.min(cap, tonumber(h[1]) + math.max(now - tonumber(h[2]), 0) * cap / 60)
end
local levels, refused, kind, retry = {}, 0, 0, 0
for i = 1, n do
  local a, k = 2 + (i - 1) * 3, (i - 1) * 3
  local rpm, tpm, conc = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local rl, tl = -1, -1
  if rpm > 0 then rl = level(KEYS[k + 1], rpm) end
  if tpm > 0 then tl = level(KEYS[k + 2], tpm) end
  if refused == 0 then
    if rpm > 0 and rl < 1 then refused, kind, retry = i, 1, (1 - rl) * 60 / rpm
    elseif tpm > 0 and tl < tokens then refused, kind, retry = i, 2, (tokens - tl) * 60 / tpm
    elseif conc > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
      if redis.call('ZCARD', KEYS[k + 3]) >= conc then refused, kind, retry = i, 3, 1 end
    end
  end
  levels[i] = {rl, tl}
end
local out = {refused, kind, math.ceil(retry * 1000)}
for i = 1, n do
  local a, k = 2 + (i - 1) * 3, (i - 1) * 3
  local rpm, tpm, conc = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local rl, tl = levels[i][1], levels[i][2]
  if refused == 0 then
    if rpm > 0 then
      rl = rl - 1
      redis.call('HSET', KEYS[k + 1], 'l', rl, 't', now)
      redis.call('PEXPIRE', KEYS[k + 1], math.ceil((rpm - rl) * 60000 / rpm) + 1000)
    end
    if tpm > 0 then
      tl = tl - tokens
      redis.call('HSET', KEYS[k + 2], 'l', tl, 't', now)
      redis.call('PEXPIRE', KEYS[k + 2], math.ceil((tpm - tl) * 60000 / tpm) + 1000)
    end
    if conc > 0 then
      redis.call('ZADD', KEYS[k + 3], now + lease, member)
      redis.call('PEXPIRE', KEYS[k + 3], math.ceil(lease * 1000) + 1000)
    end
  end
  out[#out + 1] = math.floor(rl * 1000)
  out[#out + 1] = math.floor(tl * 1000)
end
return out
"""

RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local tokens, member = tonumber(ARGV[#ARGV - 1]), ARGV[#ARGV]
for i = 1, n do
  local tpm, conc = tonumber(ARGV[1 + (i - 1) * 2 + 1]), tonumber(ARGV[1 + (i - 1) * 2 + 2])
  local tkey, ckey = KEYS[(i - 1) * 2 + 1], KEYS[(i - 1) * 2 + 2]
  if tpm > 0 and tokens > 0 then
    local h = redis.call('HMGET', tkey, 'l', 't')
    local l = tpm
    if h[1] then
      l = math.min(tpm, tonumber(h[1]) + math.max(now - tonumber(h[2]), 0) * tpm / 60)
    end
    l = l - tokens
    redis.call('HSET', tkey, 'l', l, 't', now)
    redis.call('PEXPIRE', tkey, math.ceil((tpm - l) * 60000 / tpm) + 1000)
  end
  if conc > 0 then redis.call('ZREM', ckey, member) end
end
return n
"""

_KIND = {1: RPM, 2: TPM, 3: CONCURRENCY}
_ACQUIRE_SHA = hashlib.sha1(ACQUIRE.encode()).hexdigest()
_RELEASE_SHA = hashlib.sha1(RELEASE.encode()).hexdigest()


class _Encoded:
    """EVALSHA/EVAL heads of the acquire and release scripts for one list of checks."""

    __slots__ = ("acquire_eval", "acquire_sha", "checks", "release_eval",
                 "slot_keys")  # fmt: skip

    def __init__(self, checks: Sequence[Check], lease: float) -> None:
        self.checks = checks
        keys: list[str] = []
        args: list[Any] = [len(checks), lease]
        rkeys: list[str] = []
        rargs: list[Any] = [len(checks)]
        for c in checks:
            name = c.bucket
            keys += [_PREFIX + "r:" + name, _PREFIX + "t:" + name, _PREFIX + "c:" + name]
            args += [c.rpm or 0, c.tpm or 0, c.concurrent or 0]
            rkeys += [_PREFIX + "t:" + name, _PREFIX + "c:" + name]
            rargs += [c.tpm or 0, c.concurrent or 0]
        self.acquire_sha, self.acquire_eval = _heads(_ACQUIRE_SHA, ACQUIRE, keys, args)
        self.release_eval = _heads(_RELEASE_SHA, RELEASE, rkeys, rargs)[1]
        self.slot_keys = [_PREFIX + "c:" + c.bucket for c in checks if c.concurrent]


def _heads(sha: str, body: str, keys: list[str], args: list[Any]) -> tuple[bytes, bytes]:
    """(EVALSHA head, EVAL head): everything but the two last arguments (tokens, member)."""
    count = b"*%d\r\n" % (3 + len(keys) + len(args) + 2)
    rest = encode_args([len(keys), *keys, *args])
    return (count + encode_args(["EVALSHA", sha]) + rest,
            count + encode_args(["EVAL", body]) + rest)  # fmt: skip


class LimitStoreUnavailable(GatewayError):
    """``on_store_error: deny`` and Redis did not answer."""

    status = 503
    type = "api_error"
    code = "limit_store_unavailable"


class RedisCounters:
    """Counters in Redis (``redis: redis://…``), with a local fallback limiter."""

    def __init__(
        self, url: str, *, on_store_error: str = "allow", lease_seconds: float = 30.0,
        timeout: float = 1.0,
    ) -> None:  # fmt: skip
        self._client = RespClient(url, timeout=timeout)
        self._deny = on_store_error == "deny"
        self._lease = lease_seconds
        self.fallback = LocalCounters()
        self.errors = 0  # store errors so far (the metric reads it)
        self._fell_back: set[str] = set()  # members the fallback admitted
        self._held: dict[str, list[str]] = {}  # member -> its concurrency keys, renewed
        self._renewer: asyncio.Task[None] | None = None
        self._heads: dict[int, _Encoded] = {}
        self._last_log = 0.0

    def _encoded(self, checks: Sequence[Check]) -> _Encoded:
        """The constant part of this check list's commands, encoded once (per Plan)."""
        entry = self._heads.get(id(checks))
        if entry is not None and entry.checks is checks:
            return entry
        if len(self._heads) > 10_000:
            self._heads.clear()
        entry = self._heads[id(checks)] = _Encoded(checks, self._lease)
        return entry

    def start(self) -> None:
        """Start renewing the leases of this instance's concurrency slots."""
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                await self.renew()
            except Exception as exc:  # noqa: BLE001 - retried on the next round
                self._failed("lease renewal", exc)

    async def renew(self) -> None:
        """Push the deadline of every slot this instance holds one lease ahead."""
        if not self._held:
            return
        t = await self._client.execute("TIME")
        deadline = int(t[0]) + int(t[1]) / 1e6 + self._lease
        ttl = int(self._lease * 1000) + 1000
        calls = []
        for member, keys in list(self._held.items()):
            for key in keys:
                calls.append(self._client.execute("ZADD", key, "XX", repr(deadline), member))
                calls.append(self._client.execute("PEXPIRE", key, ttl))
        await asyncio.gather(*calls)  # one write: commands of one loop iteration are pipelined

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_log > 10:  # one line per 10 s, not one per request
            self._last_log = now
            log.warning("rate-limit store (Redis) failed on %s: %s; %s", what,
                        type(exc).__name__, "denying" if self._deny else "local fallback limiter")

    async def acquire(self, checks: Sequence[Check], tokens: int, member: str) -> Decision:
        enc = self._encoded(checks)
        tail = encode_args((tokens, member))
        try:
            try:
                out = await (await self._client.send(enc.acquire_sha + tail))
            except RedisError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                out = await (await self._client.send(enc.acquire_eval + tail))
        except Exception as exc:  # noqa: BLE001 - any Redis/network failure: the documented choice
            self._failed("admission", exc)
            if self._deny:
                raise LimitStoreUnavailable(
                    "The rate-limit store is unavailable; try again shortly."
                ) from None
            self._fell_back.add(member)
            return self.fallback.acquire_now(checks, tokens, member)
        index, kind, retry_ms = out[0], out[1], out[2]
        if not index and enc.slot_keys:
            self._held[member] = enc.slot_keys
        levels = [
            (out[3 + 2 * i] / 1000 if c.rpm else None, out[4 + 2 * i] / 1000 if c.tpm else None)
            for i, c in enumerate(checks)
        ]
        refused = (checks[index - 1], _KIND[kind]) if index else None
        return _decision(checks, levels, refused, retry_ms / 1000)

    async def release(self, checks: Sequence[Check], member: str, tokens: int) -> None:
        """Queue the release (not awaited: a later command on this connection runs after it).

        Sent as EVAL, not EVALSHA: a NOSCRIPT answer (Redis restarted or its scripts
        flushed) could only be retried after the commands queued behind it, so a
        request admitted right after would still see the slot held.
        """
        if member in self._fell_back:
            self._fell_back.discard(member)
            self.fallback.release_now(checks, member, tokens)
            return
        self._held.pop(member, None)
        enc = self._encoded(checks)
        if not tokens and not enc.slot_keys:
            return
        try:
            reply = await self._client.send(enc.release_eval + encode_args((tokens, member)))
        except RedisError as exc:  # not connected: the lease frees the slot later
            self._failed("settlement", exc)
            return
        reply.add_done_callback(self._released)

    def _released(self, done: asyncio.Future[Any]) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is not None:
            self._failed("settlement", exc)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self._client.close()
