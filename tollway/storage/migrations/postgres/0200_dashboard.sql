-- The dashboard (issue 17) reads the ledger by time: spend per hour or day, over all
-- accounts or one. Without these indexes each chart would scan the whole ledger.
CREATE INDEX ledger_time ON ledger_entries(created_at);
CREATE INDEX ledger_account_time ON ledger_entries(account_id, created_at);
