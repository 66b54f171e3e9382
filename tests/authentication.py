"""What authenticating an API request costs in queries, for the tests that count them."""

from __future__ import annotations

from apm.cache import cache_shared


def authentication_queries() -> int:
    """The token's lookup, joined to its user: none when the shared cache (Redis) remembers a token used
    lately (apm.services.api_token_authenticate), one on a cache of the process's own."""
    return 0 if cache_shared() else 1
