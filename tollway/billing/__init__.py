"""Billing: pricing, ledger, crash recovery, audit (admission: ``tollway.admission``)."""

__all__: list[str] = []
