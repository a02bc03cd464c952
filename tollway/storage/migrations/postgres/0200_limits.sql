-- Tenant controls (tollway.limits): stored per-key/per-account limits and spend caps.

-- The limits set at run time (CLI, admin API), as JSON; the config's are merged under them.
CREATE TABLE tenant_limits (
    scope TEXT NOT NULL CHECK (scope IN ('key', 'account')),
    subject_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, subject_id)
);
CREATE INDEX tenant_limits_updated ON tenant_limits(updated_at);

-- Spend per cap period: settled debits plus what open reservations hold against the cap.
CREATE TABLE spend_counters (
    scope TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start DOUBLE PRECISION NOT NULL,
    spent_micros BIGINT NOT NULL DEFAULT 0,
    reserved_micros BIGINT NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    PRIMARY KEY (scope, subject_id, period, period_start)
);

-- What each open reservation holds against each cap (closed with the reservation).
CREATE TABLE spend_holds (
    reservation_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start DOUBLE PRECISION NOT NULL,
    amount_micros BIGINT NOT NULL CHECK (amount_micros >= 0),
    PRIMARY KEY (reservation_id, scope)
);
