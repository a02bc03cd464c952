"""Embeddings tests share the storage fixtures (both dialects) and the async runner."""

from tests.storage.conftest import dsn, pytest_pyfunc_call

__all__ = ["dsn", "pytest_pyfunc_call"]
