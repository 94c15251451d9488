"""API keys to tenants: compared in constant time, never logged.

The presented key is compared with every configured key (`hmac.compare_digest`, no early
exit), so the time taken says nothing about which key, or how much of one, matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from ._config import TenantConfig
from ._errors import APIError

__all__ = ["ANONYMOUS", "authenticate", "bearer_key"]

#: The tenant name of every request when no tenants are configured (no auth, no totals).
ANONYMOUS = "anonymous"


def bearer_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer KEY` (or `x-api-key`), None when absent."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def authenticate(key: str | None, tenants: Mapping[str, TenantConfig]) -> str:
    """The name of the tenant `key` belongs to.

    Raises:
        APIError: 401 when tenants are configured and no key was sent; 403 for an unknown key.
    """
    if not tenants:
        return ANONYMOUS
    if key is None:
        raise APIError(
            401,
            "missing API key: send it as 'Authorization: Bearer KEY' (the openai client's api_key)",
            type="authentication_error",
            code="missing_api_key",
        )
    given = key.encode()
    found: str | None = None
    for name, tenant in tenants.items():
        for candidate in tenant.keys:
            # Every key is compared, whatever matched before: constant time over the table.
            if hmac.compare_digest(given, candidate.encode()):
                found = name
    if found is None:
        raise APIError(
            403,
            "unknown API key: it belongs to no tenant of this server",
            type="permission_error",
            code="unknown_api_key",
        )
    return found
