-- The dashboard (issue 17). Its charts read hourly rollups of the traces and of the
-- ledger's debits, brought up to date in the background by id (both tables only grow),
-- plus the few rows newer than the rollup; the ledger's page filters read it by time.

CREATE INDEX ledger_time ON ledger_entries(created_at);
CREATE INDEX ledger_account_time ON ledger_entries(account_id, created_at);

-- how far each rollup has read: ids up to last_id are in it; pending_id is the newest id
-- seen at the previous refresh (rolled up at the next one, so that no transaction that
-- took a smaller id can still be committing)
CREATE TABLE dashboard_rollup_state (
    name TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL,
    pending_id BIGINT NOT NULL
);
INSERT INTO dashboard_rollup_state (name, last_id, pending_id) VALUES ('traces', 0, 0);
INSERT INTO dashboard_rollup_state (name, last_id, pending_id) VALUES ('ledger', 0, 0);

CREATE TABLE trace_rollup (
    hour BIGINT NOT NULL,          -- start of the hour, Unix seconds
    account_id TEXT NOT NULL,     -- '' for none
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    fallbacks BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    rate_sum DOUBLE PRECISION NOT NULL,
    rate_n BIGINT NOT NULL,
    PRIMARY KEY (hour, account_id, model, deployment)
);
CREATE INDEX trace_rollup_account ON trace_rollup(account_id, hour);

CREATE TABLE spend_rollup (
    hour BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    spend_micros BIGINT NOT NULL,   -- debits, as a positive amount
    debits BIGINT NOT NULL,
    PRIMARY KEY (hour, account_id, model, deployment)
);
CREATE INDEX spend_rollup_account ON spend_rollup(account_id, hour);
