-- The CHECK constraints on reservations.state and ledger_entries.kind said `x IN (…)` with
-- three or more values, which SQLite evaluates by building an ephemeral index of the list
-- for every row it writes: three of them a billed request (its reservation's insert and
-- close, its debit's insert), a page each. The same constraints as `x = … OR x = …` are
-- evaluated in place. SQLite cannot change a CHECK constraint in place, so both tables are
-- rebuilt as in 0010: every row, id and sequence kept, indexes and triggers re-created.

CREATE TABLE reservations_new (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    instance_id TEXT NOT NULL,
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    state TEXT NOT NULL DEFAULT 'open'
        CHECK (state = 'open' OR state = 'settled' OR state = 'released'),
    created_at REAL NOT NULL,
    closed_at REAL
);

INSERT INTO reservations_new (rowid, id, request_id, account_id, instance_id, amount_micros,
    state, created_at, closed_at)
SELECT rowid, id, request_id, account_id, instance_id, amount_micros, state, created_at,
    closed_at
FROM reservations;

DROP TABLE reservations;
ALTER TABLE reservations_new RENAME TO reservations;

CREATE INDEX reservations_open ON reservations(state, created_at) WHERE state = 'open';

CREATE TABLE ledger_entries_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL CHECK (kind = 'credit' OR kind = 'adjustment' OR kind = 'debit'
                              OR kind = 'unsettled' OR kind = 'provider_overage'),
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
    base_cost_micros, platform_fee_micros, total_cost_micros, partial, note, created_at,
    cache_write_tokens, cache_write_1h_tokens, output_tokens)
SELECT id, account_id, kind, amount_micros, request_id, model, deployment, prompt_tokens,
    cached_tokens, completion_tokens, reasoning_tokens, prices, base_cost_micros,
    platform_fee_micros, total_cost_micros, partial, note, created_at, cache_write_tokens,
    cache_write_1h_tokens, output_tokens
FROM ledger_entries;

-- ids go on from where the old table's sequence was, not only from its largest id
UPDATE sqlite_sequence
SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'ledger_entries'))
WHERE name = 'ledger_entries_new'
    AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'ledger_entries');

DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_new RENAME TO ledger_entries;

CREATE INDEX ledger_account ON ledger_entries(account_id, id);
CREATE UNIQUE INDEX ledger_one_debit ON ledger_entries(request_id) WHERE kind = 'debit';
CREATE UNIQUE INDEX ledger_one_overage ON ledger_entries(request_id)
    WHERE kind = 'provider_overage';
CREATE INDEX ledger_time ON ledger_entries(created_at);
CREATE INDEX ledger_account_time ON ledger_entries(account_id, created_at);
CREATE INDEX ledger_account_kind ON ledger_entries(account_id, kind, id);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
