"""Which test servers answer on this machine: ``python -m tests.services postgres redis mariadb``.

Used by ``make test`` to choose the database legs it runs. Exits 0 when every named service answers,
1 otherwise, printing what is missing. ``chromium`` is no server but the headless browser of the
end-to-end tests (tests/e2e): there when Chromium and its driver are installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys

SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
    "mariadb": ("127.0.0.1", 3306),
    "rabbitmq": ("127.0.0.1", 5672),
}
# A service is only usable when its Python driver is installed too.
DRIVERS = {"mariadb": "MySQLdb"}

# The production cache (django-redis, IGNORE_EXCEPTIONS) pointed at a port where nothing listens.
UNREACHABLE_REDIS = {
    "default": {
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "IGNORE_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
        },
    }
}


# The end-to-end tests' browser: Debian's ``chromium`` and ``chromium-driver`` (.ci/run installs them),
# driven through Selenium. Elsewhere (another system, a Chrome of its own) the variables name them.
CHROMIUM_VARIABLE = "APM_TEST_CHROMIUM"
CHROMEDRIVER_VARIABLE = "APM_TEST_CHROMEDRIVER"


def chromium_paths() -> tuple[str | None, str | None]:
    """The browser and its driver: the programs the variables name, else ``chromium``/``chromedriver``."""
    browser = os.environ.get(CHROMIUM_VARIABLE) or shutil.which("chromium")
    driver = os.environ.get(CHROMEDRIVER_VARIABLE) or shutil.which("chromedriver")
    return browser, driver


def chromium_missing() -> str:
    """What the end-to-end tests lack on this machine, in words ("" when nothing is missing)."""
    browser, driver = chromium_paths()
    missing = []
    if browser is None or not os.access(browser, os.X_OK):
        missing.append(f"chromium (apt-get install chromium, or {CHROMIUM_VARIABLE}=<browser>)")
    if driver is None or not os.access(driver, os.X_OK):
        missing.append(f"chromedriver (apt-get install chromium-driver, or {CHROMEDRIVER_VARIABLE}=<driver>)")
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install -r requirements/dev.txt)")
    return "; ".join(missing)


def answers(name: str) -> bool:
    if name == "chromium":
        return not chromium_missing()
    if name in DRIVERS and importlib.util.find_spec(DRIVERS[name]) is None:
        return False
    try:
        with socket.create_connection(SERVICES[name], timeout=2):
            return True
    except OSError:
        return False


def main(names: list[str]) -> int:
    missing = [name for name in names if not answers(name)]
    if missing:
        print(f"not available: {', '.join(missing)}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
