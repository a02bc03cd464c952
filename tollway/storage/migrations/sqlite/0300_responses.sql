-- Stored responses of the Responses API (issue 16): what previous_response_id continues,
-- GET/DELETE /v1/responses/{id} and its input_items read. Every read is by account.
-- account_id is '' for requests served without authentication.

CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    input TEXT NOT NULL,      -- JSON: this request's input items
    context TEXT NOT NULL,    -- JSON: the items before it (previous responses' input and output)
    response TEXT NOT NULL    -- JSON: the response object
);
CREATE INDEX responses_account ON responses(account_id, created_at);
