"""Tenant controls: rate limits, spend caps and model access per key and account.

Modules, each with one job:

- ``config``: the ``limits:`` section and the limit spec shared by config, CLI and API.
- ``rules``: which limits apply to a request (config merged with stored limits).
- ``store``: stored per-key/per-account limits (table ``tenant_limits``).
- ``counters`` / ``redis_counters``: rpm, tpm and concurrency counters, in-process or Redis.
- ``caps``: spend-cap counters, held in the same SQL transaction as the balance reservation.
- ``headers``: the ``x-ratelimit-*`` headers and the 429/402/403 errors.
- ``feature``: the per-app state whose methods are the gateway's hooks.
- ``plugin``: the one entry point, ``LimitsPlugin`` (the plugin contract).
- ``admin`` / ``cli``: limits at run time (admin API, CLI).
"""
