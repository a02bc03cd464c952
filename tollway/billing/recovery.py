"""Crash safety: instance liveness and the release of orphaned reservations.

Each gateway process registers an instance row (random id, hostname, pid) and
heartbeats it. A reservation is orphaned when its owner is dead — no instance
row, a heartbeat older than ``instance_timeout_seconds``, or (same host) a pid
that no longer runs or is ours but started before us — or when it is older than
``reservation_max_age_seconds`` whoever owns it. Orphans are released at start
and on every heartbeat, each with an ``unsettled`` ledger entry (amount 0, the
held amount in its note) so the request is on record; the usage of a request
that died with its process is unknown, so nothing is charged for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Protocol

from tollway.billing.config import BillingConfig
from tollway.storage.base import (
    InstanceRecord,
    InstanceStore,
    LedgerEntry,
    ReservationStore,
)

__all__ = ["InstanceLease", "pid_alive"]

log = logging.getLogger("tollway.billing")

# When this process (about) started: an instance row with our own pid but an
# earlier start is a previous incarnation (e.g. a container restarted as pid 1).
_PROCESS_STARTED = time.time()


class _Store(InstanceStore, ReservationStore, Protocol):
    """Instances plus reservations."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class InstanceLease:
    """This process's instance row, its heartbeat, and the orphan reaper."""

    def __init__(
        self,
        store: _Store,
        config: BillingConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self.id = f"inst_{secrets.token_hex(8)}"
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self._task: asyncio.Task[None] | None = None
        # called when a heartbeat finds this instance's row gone: another instance took it
        # for dead and may have released its reservations (balance leases retire then)
        self.on_judged_dead: Callable[[], None] | None = None

    async def start(self, *, background: bool = True) -> list[LedgerEntry]:
        """Register, release orphans left by dead instances, then heartbeat in the background."""
        now = self._clock()
        await self._store.register_instance(
            InstanceRecord(self.id, self.hostname, self.pid, now, now)
        )
        released = await self.recover()
        if background and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._beat_forever())
        return released

    def _dead(self, record: InstanceRecord, now: float) -> bool:
        if record.id == self.id:
            return False
        if now - record.heartbeat_at > self._config.instance_timeout_seconds:
            return True
        if record.hostname == self.hostname:
            if record.pid == self.pid:
                return record.started_at < _PROCESS_STARTED
            return not pid_alive(record.pid)
        return False

    async def recover(self) -> list[LedgerEntry]:
        """Release every orphaned reservation; return the ``unsettled`` entries written."""
        now = self._clock()
        instances = await self._store.list_instances()
        dead = {r.id for r in instances if self._dead(r, now)}
        alive = {r.id for r in instances} - dead
        released: list[LedgerEntry] = []
        # the candidates: of no live instance, or older than any request may last (a
        # lease may last longer: checked below); not every live stream's reservation
        cutoff = now - self._config.reservation_max_age_seconds
        for res in await self._store.open_reservations(not_of=alive, opened_before=cutoff):
            if res.instance_id not in alive:
                reason = f"owner instance {res.instance_id} died before settling"
            elif now - res.created_at > self._config.longest_open_seconds(res.request_id):
                # a live instance's balance lease may last longer than any one request
                reason = "reservation outlived the longest allowed request"
            else:
                continue
            entry = await self._store.release_orphan(res.id, reason)
            if entry is not None:
                log.warning("released orphaned reservation %s (request %s): %s",
                            res.id, res.request_id, reason)  # fmt: skip
                released.append(entry)
        for instance_id in dead:
            await self._store.remove_instance(instance_id)
        return released

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.instance_heartbeat_seconds)
            try:
                now = self._clock()
                if not await self._store.heartbeat(self.id, now):
                    log.warning("instance %s was taken for dead; registering again", self.id)
                    if self.on_judged_dead is not None:
                        self.on_judged_dead()
                    await self._store.register_instance(
                        InstanceRecord(self.id, self.hostname, self.pid, now, now)
                    )
                await self.recover()
            except Exception:  # a DB hiccup must not kill the heartbeat
                log.exception("instance heartbeat failed")

    async def stop(self) -> None:
        """Stop heartbeating and deregister (call after in-flight requests settled)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._store.remove_instance(self.id)
