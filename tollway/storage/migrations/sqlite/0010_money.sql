-- The ledger learns the provider_overage kind (an upstream's cost beyond a request's
-- reservation: amount 0, the excess in its figures) and the token columns of cache
-- writes and billed output. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt with every row and id kept; its indexes and triggers are re-created.

CREATE TABLE ledger_entries_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'adjustment', 'debit', 'unsettled',
                                       'provider_overage')),
    amount_micros INTEGER NOT NULL,
    request_id TEXT,
    model TEXT,
    deployment TEXT,
    prompt_tokens INTEGER,
    cached_tokens INTEGER,
    completion_tokens INTEGER,
    reasoning_tokens INTEGER,
    prices TEXT,
    base_cost_micros INTEGER,
    platform_fee_micros INTEGER,
    total_cost_micros INTEGER,
    partial INTEGER NOT NULL DEFAULT 0,
    note TEXT,
    created_at REAL NOT NULL,
    cache_write_tokens INTEGER,
    cache_write_1h_tokens INTEGER,
    output_tokens INTEGER
);

INSERT INTO ledger_entries_new (id, account_id, kind, amount_micros, request_id, model,
    deployment, prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, prices,
    base_cost_micros, platform_fee_micros, total_cost_micros, partial, note, created_at)
SELECT id, account_id, kind, amount_micros, request_id, model, deployment, prompt_tokens,
    cached_tokens, completion_tokens, reasoning_tokens, prices, base_cost_micros,
    platform_fee_micros, total_cost_micros, partial, note, created_at
FROM ledger_entries;

DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_new RENAME TO ledger_entries;

CREATE INDEX ledger_account ON ledger_entries(account_id, id);
CREATE UNIQUE INDEX ledger_one_debit ON ledger_entries(request_id) WHERE kind = 'debit';
CREATE UNIQUE INDEX ledger_one_overage ON ledger_entries(request_id)
    WHERE kind = 'provider_overage';

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
