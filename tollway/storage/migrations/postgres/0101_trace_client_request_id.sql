-- Tollway's request ids are unique; the client's X-Request-Id is only a label (issue 12).
-- ``request_id`` holds tollway's id; ``client_request_id`` the client's, when it sent one.
-- GET /v1/traces/{id} finds a trace by either. Most requests send none: a partial index.

ALTER TABLE traces ADD COLUMN client_request_id TEXT;
CREATE INDEX traces_client_request ON traces(client_request_id)
    WHERE client_request_id IS NOT NULL;
