-- One row per request (issue 4). Times are Unix epoch seconds (REAL).
-- ``data`` is the whole trace record as JSON; the other columns exist to filter and page.

CREATE TABLE traces (
    request_id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    account_id TEXT,
    key_id TEXT,
    model TEXT,
    deployment TEXT,
    status INTEGER NOT NULL,
    data TEXT NOT NULL,
    bodies TEXT
);
CREATE INDEX traces_account_time ON traces(account_id, received_at DESC, request_id DESC);
CREATE INDEX traces_time ON traces(received_at DESC, request_id DESC);
