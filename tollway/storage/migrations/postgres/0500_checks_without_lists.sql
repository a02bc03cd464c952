-- SQLite's 0500 rewrites two CHECK constraints whose `IN (…)` lists it evaluated with an
-- ephemeral index for every row written. PostgreSQL evaluates such a list in place:
-- nothing to change here (the file keeps the two dialects' migrations parallel).
SELECT 1;
