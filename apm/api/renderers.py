"""The browsable API's HTML pages, under the Content-Security-Policy (docs/security.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import renderers


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's browsable API, allowed inline styles: its templates position buttons with style attributes
    and its code highlighting is a <style> block. Scripts stay APM's own, as on every other page."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> Any:
        response = (renderer_context or {}).get("response")
        if response is not None:
            # django-csp's middleware reads this from the response (what its @csp_update sets).
            response._csp_update = {"style-src": ["'unsafe-inline'"]}
        return super().render(data, accepted_media_type, renderer_context)
