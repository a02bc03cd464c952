"""The ledger's columns in one order, shared by every statement that inserts an entry."""

from __future__ import annotations

from operator import attrgetter

__all__ = ["ENTRY_COLUMNS", "ENTRY_FIELDS", "ENTRY_PLACEHOLDERS", "entry_values"]

ENTRY_COLUMNS = (
    "account_id, kind, amount_micros, request_id, model, deployment, prompt_tokens,"
    " cached_tokens, completion_tokens, reasoning_tokens, prices, base_cost_micros,"
    " platform_fee_micros, total_cost_micros, partial, note, cache_write_tokens,"
    " cache_write_1h_tokens, output_tokens, created_at"
)
# a NewEntry's fields in column order (``created_at`` is the insert's time, not a field)
ENTRY_FIELDS = [c for c in ENTRY_COLUMNS.replace(" ", "").split(",") if c != "created_at"]
entry_values = attrgetter(*ENTRY_FIELDS)  # an entry's values in column order (a tuple)
ENTRY_PLACEHOLDERS = ", ".join("?" for _ in ENTRY_COLUMNS.split(","))
