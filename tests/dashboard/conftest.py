"""Dashboard fixtures: a trace/storage DSN on SQLite and PostgreSQL (from tests.tracing)."""

from tests.tracing.conftest import dsn  # noqa: F401 - re-exported fixture
