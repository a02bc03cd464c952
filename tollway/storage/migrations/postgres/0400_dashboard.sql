-- The dashboard (issue 17). Its charts read hourly and daily rollups of the traces and of
-- the ledger's debits, brought up to date in the background by id (both tables only grow),
-- plus the few rows newer than the rollups; the ledger's page filters read it by time.

CREATE INDEX ledger_time ON ledger_entries(created_at);
CREATE INDEX ledger_account_time ON ledger_entries(account_id, created_at);
CREATE INDEX ledger_account_kind ON ledger_entries(account_id, kind, id);

-- how far the rollups have read: ids up to last_id are in them; pending_id is the newest
-- id seen at the previous refresh (rolled up at the next one, so that no transaction that
-- took a smaller id can still be committing)
CREATE TABLE dashboard_rollup_state (
    name TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL,
    pending_id BIGINT NOT NULL
);
INSERT INTO dashboard_rollup_state (name, last_id, pending_id) VALUES ('traces', 0, 0);
INSERT INTO dashboard_rollup_state (name, last_id, pending_id) VALUES ('ledger', 0, 0);

CREATE TABLE trace_rollup_hour (
    bucket_start BIGINT NOT NULL,  -- Unix seconds, a multiple of the hour
    account_id TEXT NOT NULL,     -- '' for none
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    fallbacks BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    rate_sum DOUBLE PRECISION NOT NULL,
    rate_n BIGINT NOT NULL,
    PRIMARY KEY (bucket_start, account_id, model, deployment)
);
CREATE INDEX trace_rollup_hour_account ON trace_rollup_hour(account_id, bucket_start);

CREATE TABLE spend_rollup_hour (
    bucket_start BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    spend_micros BIGINT NOT NULL,   -- debits, as a positive amount
    debits BIGINT NOT NULL,
    PRIMARY KEY (bucket_start, account_id, model, deployment)
);
CREATE INDEX spend_rollup_hour_account ON spend_rollup_hour(account_id, bucket_start);

CREATE TABLE trace_rollup_day (
    bucket_start BIGINT NOT NULL,  -- Unix seconds, a multiple of the day
    account_id TEXT NOT NULL,     -- '' for none
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    fallbacks BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    rate_sum DOUBLE PRECISION NOT NULL,
    rate_n BIGINT NOT NULL,
    PRIMARY KEY (bucket_start, account_id, model, deployment)
);
CREATE INDEX trace_rollup_day_account ON trace_rollup_day(account_id, bucket_start);

CREATE TABLE spend_rollup_day (
    bucket_start BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    spend_micros BIGINT NOT NULL,   -- debits, as a positive amount
    debits BIGINT NOT NULL,
    PRIMARY KEY (bucket_start, account_id, model, deployment)
);
CREATE INDEX spend_rollup_day_account ON spend_rollup_day(account_id, bucket_start);
