-- Accounts, API keys, reservations and the append-only ledger (PostgreSQL).
-- Money is integer micro-USD; times are Unix epoch seconds (double precision).

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    balance_micros BIGINT NOT NULL DEFAULT 0,
    reserved_micros BIGINT NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    platform_fee_fraction TEXT,
    fixed_fee_micros BIGINT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX api_keys_account ON api_keys(account_id);
CREATE INDEX api_keys_updated ON api_keys(updated_at);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    instance_id TEXT NOT NULL,
    amount_micros BIGINT NOT NULL CHECK (amount_micros >= 0),
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled', 'released')),
    created_at DOUBLE PRECISION NOT NULL,
    closed_at DOUBLE PRECISION
);
CREATE INDEX reservations_open ON reservations(state, created_at) WHERE state = 'open';

CREATE TABLE ledger_entries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'adjustment', 'debit', 'unsettled')),
    amount_micros BIGINT NOT NULL,
    request_id TEXT,
    model TEXT,
    deployment TEXT,
    prompt_tokens BIGINT,
    cached_tokens BIGINT,
    completion_tokens BIGINT,
    reasoning_tokens BIGINT,
    prices TEXT,
    base_cost_micros BIGINT,
    platform_fee_micros BIGINT,
    total_cost_micros BIGINT,
    partial BOOLEAN NOT NULL DEFAULT FALSE,
    note TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX ledger_account ON ledger_entries(account_id, id);
CREATE UNIQUE INDEX ledger_one_debit ON ledger_entries(request_id) WHERE kind = 'debit';

CREATE FUNCTION tollway_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only';
END;
$$;

CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION tollway_ledger_append_only();
