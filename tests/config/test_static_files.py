"""Static files as production serves them: hashed names, gzip and brotli copies, cached forever."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def _production() -> ModuleType:
    """The production settings module, read with the variables it requires (then forgotten again)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_SECRET_KEY", "static-files-test-" + "k" * 40)
        patch.setenv("DJANGO_ALLOWED_HOSTS", "testserver")
        patch.setenv("CELERY_BROKER_URL", "redis://broker.example.com:6379/0")
        sys.modules.pop("config.settings.production", None)
        try:
            return importlib.import_module("config.settings.production")
        finally:
            sys.modules.pop("config.settings.production", None)


@pytest.fixture(scope="module")
def production() -> ModuleType:
    return _production()


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory, production: ModuleType) -> Iterator[Path]:
    """APM's own static files collected once for the module, as production collects them (the admin's,
    DRF's and the API docs' files are left out: compressing them takes a minute and proves nothing more)."""
    root = tmp_path_factory.mktemp("static")
    storages = {"default": production.STORAGES["default"], "staticfiles": production.STORAGES["staticfiles"]}
    with override_settings(STATIC_ROOT=str(root), STORAGES=storages):
        call_command(
            "collectstatic",
            "--noinput",
            "--ignore=admin",
            "--ignore=rest_framework",
            "--ignore=drf_spectacular_sidecar",
            "--ignore=debug_toolbar",
            verbosity=0,
        )
        yield root


def test_collectstatic_writes_hashed_files_with_gzip_and_brotli_copies(collected: Path):
    hashed = [path for path in collected.glob("insights/pages.*.css") if path.suffix == ".css"]
    assert len(hashed) == 1, hashed
    css = hashed[0]
    assert css.with_name(css.name + ".gz").exists()
    assert css.with_name(css.name + ".br").exists()


def test_whitenoise_answers_brotli_with_an_immutable_cache_header(collected: Path, production: ModuleType):
    middleware = production.MIDDLEWARE
    with override_settings(MIDDLEWARE=middleware, DEBUG=False):
        client = Client()
        name = next(path.name for path in collected.glob("insights/pages.*.css") if path.suffix == ".css")
        response = client.get(f"/static/insights/{name}", HTTP_ACCEPT_ENCODING="gzip, deflate, br")
        assert response.status_code == 200
        assert response["Content-Encoding"] == "br"
        assert "immutable" in response["Cache-Control"]
        assert re.search(r"max-age=\d{8,}", response["Cache-Control"])
        assert "Accept-Encoding" in response["Vary"]


def test_pages_link_the_hashed_files(collected: Path, world):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(world.users["owner"])
    page = client.get("/projects/ALPHA/").content.decode()
    assert re.search(r'href="/static/insights/pages\.[0-9a-f]{12}\.css"', page)
    assert re.search(r'src="/static/insights/pages\.[0-9a-f]{12}\.js" defer', page)


def test_a_cdn_can_serve_the_static_files(monkeypatch: pytest.MonkeyPatch):
    from config.settings import base  # noqa: PLC0415 (re-read below with the variable set)

    monkeypatch.setenv("DJANGO_STATIC_URL", "https://cdn.example.com/apm/static/")
    try:
        assert importlib.reload(base).STATIC_URL == "https://cdn.example.com/apm/static/"
    finally:
        monkeypatch.delenv("DJANGO_STATIC_URL")
        importlib.reload(base)


def test_whitenoise_answers_right_after_the_security_middleware(production: ModuleType):
    # Before it, a static answer would leave without SecurityMiddleware's headers (HSTS, nosniff); an
    # app middleware added at the top once moved it there.
    middleware = production.MIDDLEWARE
    security = middleware.index("django.middleware.security.SecurityMiddleware")
    assert middleware[security + 1] == "whitenoise.middleware.WhiteNoiseMiddleware"
    assert middleware.count("whitenoise.middleware.WhiteNoiseMiddleware") == 1
