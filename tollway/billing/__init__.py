"""Billing: pricing, ledger, crash recovery, audit (admission: ``tollway.billing.admission``)."""

__all__: list[str] = []
