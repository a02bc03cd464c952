-- The ledger learns the provider_overage kind (an upstream's cost beyond a request's
-- reservation: amount 0, the excess in its figures) and the token columns of cache
-- writes and billed output.

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('credit', 'adjustment', 'debit', 'unsettled', 'provider_overage'));

ALTER TABLE ledger_entries
    ADD COLUMN cache_write_tokens BIGINT,
    ADD COLUMN cache_write_1h_tokens BIGINT,
    ADD COLUMN output_tokens BIGINT;

CREATE UNIQUE INDEX ledger_one_overage ON ledger_entries(request_id)
    WHERE kind = 'provider_overage';
