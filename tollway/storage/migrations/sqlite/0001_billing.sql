-- Accounts, API keys, reservations and the append-only ledger (SQLite).
-- Money is integer micro-USD; times are Unix epoch seconds (REAL).

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    balance_micros INTEGER NOT NULL DEFAULT 0,
    reserved_micros INTEGER NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    platform_fee_fraction TEXT,
    fixed_fee_micros INTEGER,
    disabled INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE INDEX api_keys_account ON api_keys(account_id);
CREATE INDEX api_keys_updated ON api_keys(updated_at);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);

CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    instance_id TEXT NOT NULL,
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled', 'released')),
    created_at REAL NOT NULL,
    closed_at REAL
);
CREATE INDEX reservations_open ON reservations(state, created_at) WHERE state = 'open';

CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'adjustment', 'debit', 'unsettled')),
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
    created_at REAL NOT NULL
);
CREATE INDEX ledger_account ON ledger_entries(account_id, id);
CREATE UNIQUE INDEX ledger_one_debit ON ledger_entries(request_id) WHERE kind = 'debit';

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
