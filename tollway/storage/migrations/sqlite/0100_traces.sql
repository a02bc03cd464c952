-- One row per request (issue 4). Times are Unix epoch seconds (REAL).
-- ``data`` is the whole trace record as JSON; the other columns exist to filter and page.
-- request_id is not unique: clients may send their own X-Request-Id, so ``seq`` is the key
-- and a lookup by request id returns the caller's newest match.

CREATE TABLE traces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    account_id TEXT,
    key_id TEXT,
    model TEXT,
    deployment TEXT,
    status INTEGER NOT NULL,
    data TEXT NOT NULL,
    bodies TEXT
);
CREATE INDEX traces_request ON traces(request_id);
CREATE INDEX traces_account_time ON traces(account_id, received_at DESC, seq DESC);
CREATE INDEX traces_time ON traces(received_at DESC, seq DESC);
