"""The admin API's routes: (method, path pattern, ``AdminAPI`` method name).

Apart from ``tollway.billing.admin_api`` so that mounting them loads none of it: the
admin API (its request bodies' validators, the audit) is loaded by the first admin
request, not by every serving process.
"""

from __future__ import annotations

__all__ = ["ADMIN_ROUTES"]

# mount each with the app's "admin" access
ADMIN_ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/admin/accounts", "list_accounts"),
    ("POST", "/admin/accounts", "create_account"),
    ("GET", "/admin/accounts/{account}", "get_account"),
    ("GET", "/admin/accounts/{account}/keys", "list_keys"),
    ("POST", "/admin/accounts/{account}/keys", "create_key"),
    ("POST", "/admin/keys/{key}/revoke", "revoke_key"),
    ("POST", "/admin/accounts/{account}/credit", "credit"),
    ("GET", "/admin/accounts/{account}/ledger", "ledger"),
    ("GET", "/admin/audit", "audit"),
]
