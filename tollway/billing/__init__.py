"""Billing: pricing, the ledger, crash recovery and the audit (admission is ``tollway.admission``)."""

__all__: list[str] = []
