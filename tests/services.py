"""Which test servers answer on this machine: ``python -m tests.services postgres redis mariadb``.

Used by ``make test`` to choose the database legs it runs. Exits 0 when every named service answers,
1 otherwise, printing what is missing.
"""

from __future__ import annotations

import importlib.util
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


def answers(name: str) -> bool:
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
