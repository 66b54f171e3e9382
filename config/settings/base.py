"""Settings shared by every environment.

Every value is read from the environment through django-environ. With no variable set at all, APM runs
on its embedded default: a SQLite file under ``var/``, a file cache beside it and Celery in eager mode,
so a fresh machine with only Python and git can run it.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config import topology
from config.storages import LOCAL_STORAGE, object_storage

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"))

# --- Core -------------------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Databases ----------------------------------------------------------------------------------------
# psycopg's pool, sized from the process's threads (config/topology.py): a thread holds one connection
# at most, so DATABASE_POOL_MAX_SIZE (max_size) defaults to the threads that may use the database at
# once (GUNICORN_THREADS in a web process; a Celery pool process is sized when the worker starts,
# config.celery_app) and DATABASE_POOL_SIZE (min_size, kept open while idle) to half of it. The guide's
# DATABASE_MAX_OVERFLOW still works when set (max_size = size + overflow). Every connection is replaced
# after DATABASE_POOL_RECYCLE seconds (max_lifetime). docs/operations.md has the arithmetic against
# PostgreSQL's max_connections.
try:
    DATABASE_POOL_SIZE, DATABASE_POOL_MAX_SIZE = topology.pool_sizes(topology.process_threads())
    # The threads a server (gunicorn, a Celery worker) runs this process with, None under a command:
    # apm.checks compares the pool with them (apm.W002).
    APM_SERVER_THREADS = topology.process_threads() if topology.server_threads_known() else None
except ValueError as exc:  # a thread count or pool size that is not a number, named
    raise ImproperlyConfigured(str(exc)) from None
DATABASE_POOL_RECYCLE = env.int("DATABASE_POOL_RECYCLE", default=3600)
# DATABASE_URL names a PgBouncer in transaction pooling rather than PostgreSQL itself (see below).
DATABASE_PGBOUNCER = env.bool("DATABASE_PGBOUNCER", default=False)
# How long a request waits for a pooled connection. A thread holds one connection at most and the pool
# has one per thread, so in normal running nobody waits; the wait that matters is the first
# request of each process during a database outage, which learns of it only when this runs out.
DATABASE_POOL_TIMEOUT = env.int("DATABASE_POOL_TIMEOUT", default=5)

# django-prometheus wraps each backend so that every query is counted per database and vendor.
_DATABASE_ENGINES = {
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
    "django.db.backends.mysql": "django_prometheus.db.backends.mysql",
}


def database_config(url: str, *, variable: str = "DATABASE_URL") -> dict:
    """Turn ``DATABASE_URL`` (or the ``variable`` named) into a Django database dict tuned for its vendor.

    Raises ``ImproperlyConfigured`` naming the problem for a URL that cannot be used, so that a typo is
    reported in one line instead of surfacing later as a driver traceback.
    """
    if "://" not in url:
        raise ImproperlyConfigured(f"{variable} {url!r} is not a database URL (scheme://user@host/name)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unknown scheme is reported below, in our words
            config = environ.Env.db_url_config(url)
    except Exception as exc:  # django-environ raises bare KeyError/ValueError for some bad URLs
        raise ImproperlyConfigured(f"{variable} {url!r} is not a database URL: {exc!r}") from exc
    engine = config.get("ENGINE", "")
    if engine not in _DATABASE_ENGINES:
        raise ImproperlyConfigured(
            f"{variable} {url!r} names an unsupported database ({engine or 'no engine'}); "
            "use postgres://, mysql:// or sqlite:///"
        )
    if engine != "django.db.backends.sqlite3" and not config.get("NAME"):
        raise ImproperlyConfigured(f"{variable} {url!r} has no database name")
    options = config.setdefault("OPTIONS", {})
    if engine == "django.db.backends.postgresql":
        # Django's native psycopg pool. It is configured here, never in the URL (django-environ would
        # pass ``?pool=true`` through as a string), and CONN_MAX_AGE must stay 0 when pooling.
        options["pool"] = {
            "min_size": DATABASE_POOL_SIZE,
            "max_size": DATABASE_POOL_MAX_SIZE,
            "max_lifetime": DATABASE_POOL_RECYCLE,
            "timeout": DATABASE_POOL_TIMEOUT,
        }
        config["CONN_MAX_AGE"] = 0
        # The pool checks a connection (one round trip) before handing it out (Django passes psycopg's
        # ConnectionPool.check_connection when health checks are on): after a database restart or
        # failover it still holds connections to the server that went away, each of which would fail
        # the request it served.
        config["CONN_HEALTH_CHECKS"] = True
        if DATABASE_PGBOUNCER:
            # PgBouncer in transaction pooling hands each transaction to any server connection, so nothing
            # may outlive a transaction on one: the WITH HOLD cursors of QuerySet.iterator() outside a
            # transaction ("cursor ... does not exist" when the next fetch lands on another server), and
            # psycopg's prepared statements (Django leaves them off unless OPTIONS turn them on; pinned
            # off here). The pool above stays, sized by threads: a client connection to PgBouncer holds
            # no server connection between transactions, and keeping it open saves a handshake per
            # request (docs/operations.md, "PgBouncer").
            options["prepare_threshold"] = None
            config["DISABLE_SERVER_SIDE_CURSORS"] = True
    elif engine == "django.db.backends.mysql":
        # MySQL/MariaDB has no pool in Django: keep connections alive between requests instead, check
        # them before reuse, use the full UTF-8 character set and strict mode so bad data fails loudly.
        # READ COMMITTED matches PostgreSQL's default, so the same service code behaves the same.
        options.setdefault("charset", "utf8mb4")
        options.setdefault("isolation_level", "read committed")
        options.setdefault("init_command", "SET sql_mode='STRICT_TRANS_TABLES'")
        config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
        config["CONN_HEALTH_CHECKS"] = True
        config.setdefault("TEST", {})["CHARSET"] = "utf8mb4"
        config["TEST"]["COLLATION"] = "utf8mb4_unicode_ci"
    else:
        # IMMEDIATE transactions take SQLite's write lock at BEGIN, so two writers queue on the lock
        # instead of failing with "database is locked" half-way through (task numbering relies on it).
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("timeout", 20)
        options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    config["ENGINE"] = _DATABASE_ENGINES[engine]
    config["ATOMIC_REQUESTS"] = False
    return config


DATABASES = {"default": database_config(env("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'apm.sqlite3'}"))}

# --- Read replica (apm.replicas; docs/operations.md, "Read replicas") ---
# A hot standby (PostgreSQL streaming replication, or a MariaDB/MySQL replica) of DATABASE_URL. The
# read-only selectors that opt in (dashboard, analytics panels, exports' reads, lists) read it while the
# request or task has not written, unless it lags more than DATABASE_REPLICA_MAX_LAG seconds or does not
# answer; both are checked at most every DATABASE_REPLICA_CHECK_SECONDS. Empty: one database, as before.
DATABASE_REPLICA_URL = env("DATABASE_REPLICA_URL", default="")
DATABASE_REPLICA_MAX_LAG = env.float("DATABASE_REPLICA_MAX_LAG", default=10.0)
DATABASE_REPLICA_CHECK_SECONDS = env.float("DATABASE_REPLICA_CHECK_SECONDS", default=5.0)
# How long one read may wait on the replica before it gives the replica up and the selector reads the
# primary instead: the server's statement_timeout, the client's connect and TCP timeouts, and (2 s
# later) apm.replicas' own limit for a server that stopped answering at all. Above the slowest
# legitimate dashboard or list query (well under a second at the sizes of docs/scale.md).
DATABASE_REPLICA_TIMEOUT = env.float("DATABASE_REPLICA_TIMEOUT", default=10.0)
for _name, _value in (
    ("DATABASE_REPLICA_MAX_LAG", DATABASE_REPLICA_MAX_LAG),
    ("DATABASE_REPLICA_CHECK_SECONDS", DATABASE_REPLICA_CHECK_SECONDS),
    ("DATABASE_REPLICA_TIMEOUT", DATABASE_REPLICA_TIMEOUT),
):
    if not 0 < _value < float("inf"):
        raise ImproperlyConfigured(f"{_name} is a number of seconds above 0, not {_value!r}.")
DATABASE_ROUTERS: list[str] = []
if DATABASE_REPLICA_URL:
    _replica = database_config(DATABASE_REPLICA_URL, variable="DATABASE_REPLICA_URL")
    if _replica["ENGINE"].endswith("sqlite3") or _replica["ENGINE"] != DATABASES["default"]["ENGINE"]:
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URL must name a replica of DATABASE_URL's PostgreSQL or MariaDB/MySQL server "
            f"(the same kind of database; SQLite has none), not {_replica['ENGINE'].rsplit('.', 1)[-1]} "
            f"beside {DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}."
        )
    _replica_options = _replica["OPTIONS"]
    _replica_seconds = math.ceil(DATABASE_REPLICA_TIMEOUT)
    if _replica["ENGINE"].endswith("postgresql"):
        # Bounded waits: a replica that goes away or freezes fails the read within about
        # DATABASE_REPLICA_TIMEOUT, and apm.replicas reads the primary instead. libpq counts the connect
        # timeout in whole seconds (2 at least); the keepalives notice a silent peer within about the
        # timeout (idle + count x interval); tcp_user_timeout ends a write the peer never acknowledges.
        _replica_options.setdefault("connect_timeout", max(2, _replica_seconds))
        _replica_options.setdefault("keepalives", 1)
        _replica_options.setdefault("keepalives_idle", max(1, _replica_seconds // 2))
        _replica_options.setdefault("keepalives_interval", max(1, _replica_seconds // 6))
        _replica_options.setdefault("keepalives_count", 3)
        _replica_options.setdefault("tcp_user_timeout", int(DATABASE_REPLICA_TIMEOUT * 1000))
        if not DATABASE_PGBOUNCER:  # PgBouncer refuses the options startup parameter
            _statement_timeout = f"-c statement_timeout={int(DATABASE_REPLICA_TIMEOUT * 1000)}"
            _replica_options["options"] = (
                f"{_replica_options.get('options', '')} {_statement_timeout}".strip()
            )
        # The pool's check before handing out a connection is a round trip with no limit: on a frozen
        # replica it would wait forever, before apm.replicas' limit applies. A pooled connection that
        # went bad fails its read instead, which then runs on the primary.
        _replica["CONN_HEALTH_CHECKS"] = False
    else:
        # mysqlclient's own limits, in whole seconds (the client may retry a read: up to about 3 x).
        _replica_options.setdefault("connect_timeout", max(2, _replica_seconds))
        _replica_options.setdefault("read_timeout", _replica_seconds)
        _replica_options.setdefault("write_timeout", _replica_seconds)
    DATABASES["replica"] = _replica
    DATABASE_ROUTERS = ["apm.replicas.ReplicaRouter"]
# --- end of read replica ---

# --- Cache --------------------------------------------------------------------------------------------
CACHE_DEFAULT_TIMEOUT = env.int("CACHE_DEFAULT_TIMEOUT", default=300)
REDIS_URL = env("REDIS_URL", default="")
# A hung Redis accepts connections and answers nothing: each call waits out the socket timeout, so it is
# short (Redis answers in a millisecond), and after one failure apm.cache's breaker leaves the cache
# alone for CACHE_RETRY_SECONDS. On Redis the cache's epoch is a lease of CACHE_EPOCH_LEASE_SECONDS:
# an outage longer than that drops every entry written before it, in every process (apm/cache.py).
CACHE_SOCKET_TIMEOUT = env.float("CACHE_SOCKET_TIMEOUT", default=0.25)
CACHE_RETRY_SECONDS = env.float("CACHE_RETRY_SECONDS", default=2.0)
CACHE_EPOCH_LEASE_SECONDS = env.float("CACHE_EPOCH_LEASE_SECONDS", default=10.0)
CACHE_REDIS_OPTIONS = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    "IGNORE_EXCEPTIONS": True,
    "SOCKET_CONNECT_TIMEOUT": CACHE_SOCKET_TIMEOUT,
    "SOCKET_TIMEOUT": CACHE_SOCKET_TIMEOUT,
}
if env("APM_CACHE", default="") == "none":
    # No cache at all, every read computes: benchmarks/pages.py measures the pages with and without one.
    CACHES: dict[str, dict[str, object]] = {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    }
elif REDIS_URL:
    CACHES = {
        "default": {
            # django-redis with metrics; IGNORE_EXCEPTIONS turns a Redis outage into cache misses, so
            # pages get slower but never fail because the cache is down.
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "TIMEOUT": CACHE_DEFAULT_TIMEOUT,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="apm"),
            "OPTIONS": CACHE_REDIS_OPTIONS,
        }
    }
    # Not one traceback per cache call (throttles, sessions) during an outage: apm.cache logs
    # "cache_breaker_opened" once per outage and /readyz reports the cache as down.
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = False
else:
    # The embedded default: files under var/cache, one directory per database. Not the local-memory
    # cache: `make run`'s server and a `manage.py ingest_repo` run beside it are two processes, and an
    # invalidation made in one must reach the other, or the server would show figures from before the
    # ingestion for as long as they live. Files are shared by every process of the machine.
    _database = DATABASES["default"]
    _cache_scope = hashlib.sha256(f"{_database.get('HOST', '')}/{_database['NAME']}".encode()).hexdigest()[
        :12
    ]
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.filebased.FileBasedCache",
            "LOCATION": env("CACHE_DIR", default=str(VAR_DIR / "cache" / _cache_scope)),
            "TIMEOUT": CACHE_DEFAULT_TIMEOUT,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="apm"),
            # Culling drops a share of the entries when there are more: a generation or the epoch may go
            # with them, which only makes their entries unreachable (apm.cache).
            "OPTIONS": {"MAX_ENTRIES": 20000},
        }
    }

# --- Applications -------------------------------------------------------------------------------------
DJANGO_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
THIRD_PARTY_APPS = [
    "django_prometheus",
    "django_structlog",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "csp",
    "dbbackup",
]
# One app per concept, listed from the bottom layer up (docs/architecture.md): each imports only the
# ones before it, and each admin module may replace the admin of a model below it with a richer one.
LOCAL_APPS = [
    "monitoring",
    "apm",
    "projects",
    "webhooks",
    "tasks",
    "repos",
    "insights",
    "reports",
    "demo",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Outermost of APM's: a fresh read scope per request, so a write anywhere in it (the session's
    # included) sends its later reads to the primary (apm.replicas). Does nothing without a replica.
    "apm.read_your_writes.ReplicaReadScopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # /api/v1/tasks is /api/v1/tasks/ for every method: APPEND_SLASH's redirect would lose a POST.
    "apm.api.middleware.ApiSlashMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A request failing because the database does not answer is a 503 with Retry-After, not a 500. Before
    # django-structlog's, which reads the signed-in user from the database (apm/middleware.py).
    "apm.middleware.DatabaseUnavailableMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    # A NUL in an API query string is a 400 before any view compares it with a column.
    "apm.api.middleware.NulRefusalMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, innermost: it turns a locked sign-in's answer into the lockout page (docs/security.md).
    "axes.middleware.AxesMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The pages' own sign-in: every active account, members who are not staff included (the admin's refuses
# them). Staff may sign in at either.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Sign-in lockout (django-axes; docs/security.md) ---
# Every password sign-in (the admin's, the pages', HTTP Basic on /api/v1/tokens/) is refused for a while
# after APM_LOGIN_FAILURE_LIMIT failures. Counted per account AND address: guessing one account's
# password does not lock its owner out elsewhere, nor the other people behind the same address.
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked account+address before any password is checked. Standalone (no get_user),
    # so sessions name ModelBackend and outlive a change of lockout tool.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("APM_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("APM_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Attempts live in the database, not the cache: the lockout holds while Redis is down (the API's rate
# limits, counted in the cache, let requests through then: apm.api.throttling).
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
# The cool-off runs from the last counted failure; attempts made while locked are refused without
# extending it, so the lockout page can say when it ends (and the right password then works).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
# The client's address by the rule the API's rate limits use (APM_NUM_PROXIES): a forged
# X-Forwarded-For neither dodges a lockout nor locks someone else out.
AXES_CLIENT_IP_CALLABLE = "config.lockout.client_address"
AXES_USERNAME_CALLABLE = "config.lockout.client_username"
AXES_LOCKOUT_CALLABLE = "config.lockout.lockout_response"
# Its start-up banner ("AXES: BEGIN version ...") on every manage.py command is noise in the JSON logs.
AXES_VERBOSE = False

# A CDN in front of the static files: DJANGO_STATIC_URL=https://cdn.example.com/apm/static/ (collected
# files keep their hashed names, so the CDN may cache them forever).
STATIC_URL = env("DJANGO_STATIC_URL", default="static/")
STATIC_ROOT = env("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# Export files (ExportJob.file). Never served at a public URL: downloads go through the API, which
# checks project membership. Workers and web must share it (a volume, or S3 through django-storages
# set in STORAGES["default"]).
MEDIA_ROOT = env("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media"))
# --- Export storage (docs/operations.md, "Export storage") ---
# With a bucket, export files go to S3-compatible object storage, which the workers that write them and
# the web processes that hand them out all reach; without one, to MEDIA_ROOT on local disk (the
# embedded default). Production without a bucket warns in `check --deploy` (apm.W050) unless
# DJANGO_MEDIA_ROOT was set, to a volume that every web and worker process mounts.
APM_MEDIA_ROOT_SET = bool(env("DJANGO_MEDIA_ROOT", default=""))
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default="")
# Seconds a download's signed URL stays valid; the client follows the redirect at once. Zero or less
# would hand out links that have already expired.
_expire_text = env("AWS_QUERYSTRING_EXPIRE", default="").strip() or "60"
if not _expire_text.isdigit() or int(_expire_text) < 1:
    raise ImproperlyConfigured(
        f"AWS_QUERYSTRING_EXPIRE is a number of seconds above 0 (60 by default), not {_expire_text!r}."
    )
AWS_QUERYSTRING_EXPIRE = int(_expire_text)
# How long a call waits on a store that accepts and never answers, and how often it is tried: 10 s
# twice for a worker's export; gunicorn.conf.py starts web processes with 5 s once (a streamed download
# holds one of their few threads, and the client asks again after Retry-After).
try:
    AWS_S3_READ_TIMEOUT = max(
        1, topology.whole_number("AWS_S3_READ_TIMEOUT", env("AWS_S3_READ_TIMEOUT", default="10"))
    )
    AWS_S3_MAX_ATTEMPTS = max(
        1, topology.whole_number("AWS_S3_MAX_ATTEMPTS", env("AWS_S3_MAX_ATTEMPTS", default="2"))
    )
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# "redirect": a download answers 302 to a signed URL of the object; "stream": the web process reads the
# object and sends it (for a store the clients cannot reach, such as an in-cluster MinIO).
APM_EXPORT_DOWNLOADS = env("APM_EXPORT_DOWNLOADS", default="redirect")
if APM_EXPORT_DOWNLOADS not in ("redirect", "stream"):
    raise ImproperlyConfigured(f"APM_EXPORT_DOWNLOADS is redirect or stream, not {APM_EXPORT_DOWNLOADS!r}.")
STORAGES = {
    "default": (
        object_storage(
            bucket=AWS_STORAGE_BUCKET_NAME,
            endpoint_url=env("AWS_S3_ENDPOINT_URL", default=""),
            access_key=env("AWS_ACCESS_KEY_ID", default=""),
            secret_key=env("AWS_SECRET_ACCESS_KEY", default=""),
            region=env("AWS_S3_REGION_NAME", default=""),
            location=env("AWS_LOCATION", default=""),
            addressing_style=env("AWS_S3_ADDRESSING_STYLE", default=""),
            url_expire=AWS_QUERYSTRING_EXPIRE,
            read_timeout=AWS_S3_READ_TIMEOUT,
            attempts=AWS_S3_MAX_ATTEMPTS,
        )
        if AWS_STORAGE_BUCKET_NAME
        else {"BACKEND": LOCAL_STORAGE}
    ),
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# --- end of export storage ---

# --- Backups (docs/operations.md, "Backups and restore") ---
# `manage.py backup` writes database dumps (and, when export files are on local disk, a tar of them) to
# STORAGES["dbbackup"], the storage django-dbbackup's own commands (dbrestore, listbackups) also use: a
# bucket of its own in production (never the exports' bucket, whose lifecycle rules delete old files),
# a directory on this machine otherwise. The git mirrors of APM_WORKSPACE are a cache, never backed up.
APM_BACKUP_BUCKET = env("APM_BACKUP_BUCKET", default="")
APM_BACKUP_DIR = env("APM_BACKUP_DIR", default=str(VAR_DIR / "backups"))
STORAGES["dbbackup"] = (
    object_storage(
        bucket=APM_BACKUP_BUCKET,
        endpoint_url=env("AWS_S3_ENDPOINT_URL", default=""),
        access_key=env("AWS_ACCESS_KEY_ID", default=""),
        secret_key=env("AWS_SECRET_ACCESS_KEY", default=""),
        region=env("AWS_S3_REGION_NAME", default=""),
        location=env("APM_BACKUP_LOCATION", default=""),
        addressing_style=env("AWS_S3_ADDRESSING_STYLE", default=""),
    )
    if APM_BACKUP_BUCKET
    else {
        "BACKEND": LOCAL_STORAGE,
        # Backups hold password hashes, API tokens and webhook secrets: readable by APM's user only.
        "OPTIONS": {
            "location": APM_BACKUP_DIR,
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    }
)
# Backups kept: each `manage.py backup` deletes the oldest beyond this many (0 keeps every one, for a
# bucket whose own lifecycle rules expire them).
# An empty or malformed value is an error, not 0: 0 would silently keep every backup forever.
_keep_text = env("APM_BACKUP_KEEP", default="14")
if not re.fullmatch(r"[0-9]+", _keep_text.strip()):
    raise ImproperlyConfigured(
        f"APM_BACKUP_KEEP is a whole number of backups, 0 or more (0: keep all), not {_keep_text!r}."
    )
APM_BACKUP_KEEP = int(_keep_text)
DBBACKUP_CLEANUP_KEEP = APM_BACKUP_KEEP or 10**9
# The name in every backup file, the same from any pod (dbbackup's default is the host name, which a
# CronJob's pod changes at every run). Microseconds in the date: two backups never share a name.
DBBACKUP_HOSTNAME = env("APM_BACKUP_NAME", default="apm")
DBBACKUP_DATE_FORMAT = "%Y-%m-%d-%H%M%S-%f"
# APM's connectors (apm/backups.py): dbbackup's, with the MariaDB password kept off the command line, a
# consistent MariaDB snapshot, and restores that check the file first and leave nothing half written.
DBBACKUP_CONNECTOR_MAPPING = {
    "django_prometheus.db.backends.postgresql": "apm.backups.PostgresConnector",
    "django.db.backends.postgresql": "apm.backups.PostgresConnector",
    "django_prometheus.db.backends.mysql": "apm.backups.MariaDBConnector",
    "django.db.backends.mysql": "apm.backups.MariaDBConnector",
    "django_prometheus.db.backends.sqlite3": "apm.backups.SQLiteConnector",
    "django.db.backends.sqlite3": "apm.backups.SQLiteConnector",
}
# Failures are reported by the command's exit status and the CronJob's alert, not by e-mail.
DBBACKUP_SEND_EMAIL = False
# --- end of backups ---

# --- Content-Security-Policy (django-csp; docs/security.md) ---
# Every HTML page runs scripts and loads styles and images from APM only (and the static files' CDN,
# when there is one): an injected <script>, inline handler or style does not run, and no site may frame
# a page (X-Frame-Options says the same to old browsers). The API's Swagger UI and ReDoc relax it on
# their own views (config/api_router.py).
_static = urlsplit(STATIC_URL)
_static_origin = [f"{_static.scheme}://{_static.netloc}"] if _static.scheme and _static.netloc else []
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, *_static_origin],
        "style-src": [SELF, *_static_origin],
        "img-src": [SELF, "data:", *_static_origin],
        "font-src": [SELF, *_static_origin],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- REST framework -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Sessions for the browsable API and people signed in to the admin; hashed tokens for integrations.
    # Token first: its WWW-Authenticate challenge makes a request without credentials answer 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apm.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apm.api.permissions.TokenScopePermission",
    ],
    # Bodies refuse deep nesting, NUL characters and lone surrogates (apm/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "apm.api.parsers.JSONParser",
        "apm.api.parsers.FormParser",
        "apm.api.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        # django-filter's, with dates and times bounded to the days APM accepts (apm.dates).
        "apm.api.filters.FilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["apm.api.throttling.UserThrottle", "apm.api.throttling.AnonThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "apm.api.pagination.PagePagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apm.api.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        # DRF's, allowed the inline styles its templates use (Content-Security-Policy, above).
        "apm.api.renderers.BrowsableAPIRenderer",
    ],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # How many proxies in front of APM append to X-Forwarded-For. Rate limits count per client address:
    # with 0, the address is the connection's own and a forged X-Forwarded-For changes nothing.
    "NUM_PROXIES": env.int("APM_NUM_PROXIES", default=0),
}
# Requests per user (anonymous: per address) and per scope, counted in the default cache (Redis in
# production), so every web process shares the count.
# How long an API token authenticated lately is remembered, with its user, in the shared cache (Redis
# only; apm.services.api_token_authenticate): a request then costs no query to authenticate. Any change to
# a token or a user drops them all when it commits. 0 turns it off.
APM_API_TOKEN_CACHE_SECONDS = env.float("APM_API_TOKEN_CACHE_SECONDS", default=60.0)
APM_API_THROTTLE_RATES = {
    "user": env("APM_API_RATE_USER", default="1200/min"),
    "anon": env("APM_API_RATE_ANON", default="60/min"),
    "tokens": env("APM_API_RATE_TOKENS", default="30/hour"),
    "hooks": env("APM_API_RATE_HOOKS", default="600/min"),
    "exports": env("APM_API_RATE_EXPORTS", default="60/hour"),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "APM (AutoProjectManagement) API",
    "DESCRIPTION": (
        "Projects, tasks, repositories and what APM reads from them. Authenticate with a session or with "
        '`Authorization: Token apm_...`; errors have the shape `{"detail": ..., "errors": {field: [...]}}`. '
        "See docs/api.md."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TaskStatusEnum": "tasks.models.Task.Status",
        "ProjectStatusEnum": "projects.models.Project.Status",
        "IngestionRunStatusEnum": "repos.models.IngestionRun.Status",
        "TaskEventKindEnum": "tasks.models.TaskEvent.Kind",
        "RepositoryKindEnum": "repos.models.Repository.Kind",
        "HealthLevelEnum": "projects.models.HealthLevel",
        "ExportJobKindEnum": "reports.models.ExportJob.Kind",
        "CommitTaskLinkOutcomeEnum": "repos.models.CommitTaskLink.Outcome",
        "WebhookEventEnum": "webhooks.models.WebhookEvent",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apm.api.schema.error_responses_add",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -------------------------------------------------------------------------------------------
# Without a broker the embedded default runs every task eagerly, in process. With CELERY_BROKER_URL
# (Redis or RabbitMQ) tasks go to real workers started with ``celery -A config worker``.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    # Eager Celery still takes a producer from the broker's pool for every task it runs, and kombu warns
    # "No hostname was supplied" each time when the in-process broker's URL names no host.
    CELERY_BROKER_URL = "memory://localhost/"
# Results (and the chords' counters that finish an ingestion run) live on the broker's Redis unless
# CELERY_RESULT_BACKEND names another, never on the cache's: the cache evicts (allkeys-lru) and keeps
# nothing across a restart (docs/operations.md, "Two Redis servers"; apm.checks refuses the cache's).
# A RabbitMQ broker needs CELERY_RESULT_BACKEND (production refuses to start without one).
CELERY_RESULT_BACKEND = env(
    "CELERY_RESULT_BACKEND", default=topology.result_backend_default(CELERY_BROKER_URL)
)
CELERY_RESULT_EXPIRES = 24 * 3600
# Separate queues let several APM installations (or test runs) share one broker.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default=topology.DEFAULT_QUEUE)
# Ingestion has a queue, and workers, of its own (config/topology.py): `celery -A config worker -Q
# celery` for the rest, `-Q ingestion` for ingestion, `-Q celery,ingestion` for one worker doing both.
CELERY_INGESTION_QUEUE = env(
    "CELERY_INGESTION_QUEUE", default=topology.ingestion_queue_default(CELERY_TASK_DEFAULT_QUEUE)
)
CELERY_TASK_ROUTES = topology.task_routes(CELERY_INGESTION_QUEUE)
CELERY_RESULT_EXTENDED = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
# Reliability: a task is acknowledged only once it has finished, so a worker that dies mid-task leaves
# it on the broker for another worker (tasks are idempotent, so a second run changes nothing).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=60 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=55 * 60)
# The broker must not hand a task to another worker while the first may still run it: the visibility
# timeout stays above the hard time limit of the longest task (plus a margin for the worker to notice).
# It is also how long Redis keeps the messages of a worker killed outright; ingestion does not wait
# for it (its runs are resumed by the schedule, docs/ingestion.md), the other tasks do.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int(
        "CELERY_BROKER_VISIBILITY_TIMEOUT", default=CELERY_TASK_TIME_LIMIT + 5 * 60
    ),
    # A broker that is down is reported in seconds (apm.jobs.BrokerUnavailable, a 503), not after a
    # minute of reconnecting while a request waits.
    "socket_connect_timeout": 3,
    # A broker that hangs (its port open, nothing answering) likewise: without a socket timeout a publish
    # waits on the silent connection for ever. Workers are not cut by it: their BRPOP asks the server to
    # answer within a second (kombu's brpop_timeout) and is read only once the socket is readable.
    # A publish on a hung broker costs three of it (the attempt, the reconnection, the retry): 6 s.
    "socket_timeout": 2,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 3
# One retry: each attempt on a hung broker costs a socket timeout, and a request waits for all of them.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
# Queuing a task also subscribes to its result on the Redis result backend (often the broker's server),
# with Celery's own defaults: a 120 s socket timeout and 20 reconnections, minutes of a request hanging
# on a Redis that does not answer. Here the same 2 s as the broker's, and one retry (a worker storing a
# result too: a result is a few bytes, a Redis that takes 2 s for them is not answering).
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
CELERY_REDIS_SOCKET_TIMEOUT = 2
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_TASK_TIME_LIMIT * 2,
    "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Periodic tasks live in the database (django-celery-beat), so operators change them in the admin
# (Periodic tasks) without a deploy. The defaults below are written there once, by migrate, and never
# overwritten afterwards (apm.schedule); disable an entry rather than delete it.
# The database scheduler, which also touches APM_HEARTBEAT_FILE on every tick (apm.beat).
CELERY_BEAT_SCHEDULER = "apm.beat:HeartbeatDatabaseScheduler"
APM_SCHEDULE_DEFAULTS: dict[str, tuple[str, dict[str, str], dict[str, object]]] = {
    # name: (task, crontab fields minute/hour/day_of_week, kwargs)
    "Ingest every repository": ("repos.ingest_all", {"minute": "*/15"}, {}),
    "Recompute project health": ("projects.health_recompute", {"minute": "5"}, {}),
    "Weekly digest": ("projects.digests_weekly", {"minute": "0", "hour": "7", "day_of_week": "1"}, {}),
    "Purge old ingestion runs": ("repos.purge_ingestion_runs", {"minute": "30", "hour": "3"}, {}),
    "Purge old push deliveries": ("repos.purge_push_deliveries", {"minute": "40", "hour": "3"}, {}),
    "Purge old exports": ("projects.exports_purge", {"minute": "45", "hour": "3"}, {}),
    "Purge old webhook deliveries": (
        "maintenance.retention_purge",
        {"minute": "50", "hour": "3"},
        {"member": "webhook_deliveries"},
    ),
    "Purge old task events": (
        "maintenance.retention_purge",
        {"minute": "55", "hour": "3"},
        {"member": "task_events"},
    ),
    "Resume stalled webhook deliveries": ("projects.webhook_deliveries_resume", {"minute": "*/5"}, {}),
    "Resume silent ingestion runs": ("repos.ingestion_runs_resume", {"minute": "*"}, {}),
    "Resume stalled deletions": ("repos.deletions_resume", {"minute": "*/5"}, {}),
}
CELERY_WORKER_SEND_TASK_EVENTS = True
# Liveness of workers and beat without the broker: their main process touches this file every
# APM_HEARTBEAT_SECONDS, and `python -m apm.heartbeat <file> --max-age <s>` is the probe (apm/heartbeat.py).
# Empty (the default): no file is written.
APM_HEARTBEAT_FILE = env("APM_HEARTBEAT_FILE", default="")
APM_HEARTBEAT_SECONDS = env.float("APM_HEARTBEAT_SECONDS", default=10.0)
CELERY_TASK_SEND_SENT_EVENT = True

# --- Logging ------------------------------------------------------------------------------------------
LOG_LEVEL = env("DJANGO_LOG_LEVEL", default="INFO")
LOG_JSON = env.bool("DJANGO_LOG_JSON", default=False)
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = True
# Keep the X-Request-ID set by nginx/the ingress, so proxy and application logs share one id.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = env.bool("DJANGO_TRUST_UPSTREAM_REQUEST_ID", default=True)

from config.logging import logging_config  # noqa: E402  (needs LOG_LEVEL and LOG_JSON above)

LOGGING = logging_config(level=LOG_LEVEL, json=LOG_JSON)

# --- APM ----------------------------------------------------------------------------------------------
# Local repositories may only be ingested from under these directories.
APM_REPO_ROOTS = env.list("APM_REPO_ROOTS", default=[str(BASE_DIR)])
# Where remote repositories are mirrored.
APM_WORKSPACE = env("APM_WORKSPACE", default=str(VAR_DIR / "workspace"))
# A CA bundle git trusts for https:// remotes signed by a private certificate authority.
APM_GIT_CA_BUNDLE = env("APM_GIT_CA_BUNDLE", default="")
# Remotes whose host resolves to a loopback, private, link-local or other internal address are refused
# (a repository URL must not make APM reach inside its own network); these networks (CIDRs) are allowed,
# for an on-premises git server.
APM_GIT_ALLOWED_NETWORKS = env.list("APM_GIT_ALLOWED_NETWORKS", default=[])
# Allow ssh:// remotes (needs an ssh client and keys on the workers).
APM_ALLOW_SSH = env.bool("APM_ALLOW_SSH", default=False)
# Ingestion: commits per chunk task, tree entries per file task, threads used when Celery runs eagerly
# (0: one per core), and how long a running ingestion may go without progress before it is abandoned.
APM_INGEST_CHUNK_COMMITS = env.int("APM_INGEST_CHUNK_COMMITS", default=2000)
APM_INGEST_CHUNK_FILES = env.int("APM_INGEST_CHUNK_FILES", default=5000)
APM_INGEST_THREADS = env.int("APM_INGEST_THREADS", default=0)
APM_INGEST_STALE_SECONDS = env.int("APM_INGEST_STALE_SECONDS", default=900)
# On workers every step of a run beats this often; a run silent for APM_INGEST_RESUME_SECONDS lost its
# worker and is resumed by the schedule, at most APM_INGEST_RESUMES_MAX times (docs/ingestion.md).
APM_INGEST_HEARTBEAT_SECONDS = env.float("APM_INGEST_HEARTBEAT_SECONDS", default=10.0)
APM_INGEST_RESUME_SECONDS = env.int("APM_INGEST_RESUME_SECONDS", default=60)
APM_INGEST_RESUMES_MAX = env.int("APM_INGEST_RESUMES_MAX", default=3)
# An open task with no event and no linked commit for this many days is stale (project health).
APM_STALE_DAYS = env.int("APM_STALE_DAYS", default=14)
# Change coupling leaves out commits touching more files than this (mass renames, reformatting).
APM_COUPLING_MAX_FILES = env.int("APM_COUPLING_MAX_FILES", default=30)
# Push webhooks (docs/api.md, "Push webhook"): the largest body parsed before it is verified, when the
# URL does not name the repository (?repository=<id>); and how long received deliveries are remembered,
# so that one sent again starts nothing.
APM_PUSH_UNVERIFIED_MAX_BYTES = env.int("APM_PUSH_UNVERIFIED_MAX_BYTES", default=1024 * 1024)
# (APM_PUSH_DELIVERIES_KEEP_DAYS: the retention block below.)
# Rows a repository's deletion deletes per statement and transaction (repos.deletion).
APM_DELETE_BATCH_ROWS = env.int("APM_DELETE_BATCH_ROWS", default=10_000)
# A repository or project marked for deletion with no batch recorded for this long lost its task (a
# message the broker dropped, a worker that died): the schedule queues it again (repos.deletion). Twice
# the time one delivery of the task works (DELETE_TASK_SECONDS, 300 s).
APM_DELETE_STALL_SECONDS = env.int("APM_DELETE_STALL_SECONDS", default=600)
# Days a project invitation stays open for its invitee to accept (docs/api.md, "Joining a project").
APM_INVITATION_EXPIRY_DAYS = env.int("APM_INVITATION_EXPIRY_DAYS", default=14)
# --- Retention (reports.retention; docs/operations.md, "Retention") ---
# Days the schedule keeps each kind of row before deleting it in batches; 0 keeps it forever. Task
# events are the history of burndown, burnup and activity, so they are kept forever unless asked.
# APM_EXPORT_KEEP_DAYS, the earlier name, still works when APM_EXPORTS_KEEP_DAYS is not set.


# A century: apm.retention.KEEP_DAYS_MAX (settings import no app module), the furthest back a cutoff goes.
_KEEP_DAYS_MAX = 36500


def _keep_days(name: str, default: int, *fallbacks: str) -> int:
    # A typo, a negative number or a count past a century stops start-up naming the variable, not the
    # first nightly purge (a huge count overflowed the date arithmetic there).
    for variable in (name, *fallbacks):
        raw = env.str(variable, default="").strip()
        if raw:
            if not (raw.isascii() and raw.isdigit()) or len(raw.lstrip("0")) > 6 or int(raw) > _KEEP_DAYS_MAX:
                raise ImproperlyConfigured(
                    f"{variable} is a whole number of days from 0 to {_KEEP_DAYS_MAX}, not {raw!r}."
                )
            return int(raw)
    return default


APM_INGESTION_RUNS_KEEP_DAYS = _keep_days("APM_INGESTION_RUNS_KEEP_DAYS", 90)
APM_PUSH_DELIVERIES_KEEP_DAYS = _keep_days("APM_PUSH_DELIVERIES_KEEP_DAYS", 30)
APM_EXPORTS_KEEP_DAYS = _keep_days("APM_EXPORTS_KEEP_DAYS", 7, "APM_EXPORT_KEEP_DAYS")
APM_EXPORT_KEEP_DAYS = APM_EXPORTS_KEEP_DAYS
APM_WEBHOOK_DELIVERIES_KEEP_DAYS = _keep_days("APM_WEBHOOK_DELIVERIES_KEEP_DAYS", 30)
APM_TASK_EVENTS_KEEP_DAYS = _keep_days("APM_TASK_EVENTS_KEEP_DAYS", 0)
# --- end of retention ---
# --- Outgoing webhooks (docs/webhooks.md) ---
# https:// only unless APM_WEBHOOK_ALLOW_HTTP; targets resolving to loopback, private, link-local or
# other internal addresses are refused unless inside one of APM_WEBHOOK_ALLOWED_NETWORKS (CIDRs).
APM_WEBHOOK_ALLOW_HTTP = env.bool("APM_WEBHOOK_ALLOW_HTTP", default=False)
APM_WEBHOOK_ALLOWED_NETWORKS = env.list("APM_WEBHOOK_ALLOWED_NETWORKS", default=[])
# Seconds to connect and to wait for the response; attempts before a delivery is given up; the first
# retry's delay (doubled per attempt, with jitter, capped at APM_WEBHOOK_BACKOFF_MAX).
APM_WEBHOOK_TIMEOUT = (
    env.float("APM_WEBHOOK_CONNECT_TIMEOUT", default=5.0),
    env.float("APM_WEBHOOK_READ_TIMEOUT", default=10.0),
)
APM_WEBHOOK_MAX_ATTEMPTS = env.int("APM_WEBHOOK_MAX_ATTEMPTS", default=6)
APM_WEBHOOK_BACKOFF = env.float("APM_WEBHOOK_BACKOFF", default=10.0)
APM_WEBHOOK_BACKOFF_MAX = env.float("APM_WEBHOOK_BACKOFF_MAX", default=3600.0)
# --- end of outgoing webhooks ---
# --- Metrics (monitoring.access, monitoring.collectors; docs/operations.md, "Metrics") ---
# Who may read /metrics and the workers' metrics server: `Authorization: Bearer <APM_METRICS_TOKEN>`, or a
# connection from an address inside APM_METRICS_ALLOWED_NETWORKS (CIDRs; never X-Forwarded-For). With
# neither, the embedded default serves them to anyone; production refuses them all (production.py).
APM_METRICS_TOKEN = env("APM_METRICS_TOKEN", default="")
APM_METRICS_ALLOWED_NETWORKS = env.list("APM_METRICS_ALLOWED_NETWORKS", default=[])
from monitoring.access import networks_parse  # noqa: E402  (the metrics block's own rule)

# Parsed here, so that a malformed network stops start-up (web and the workers' metrics server) instead
# of failing every scrape with a 500.
try:
    networks_parse(APM_METRICS_ALLOWED_NETWORKS)
except ValueError as _error:
    raise ImproperlyConfigured(str(_error)) from None
APM_METRICS_OPEN_WITHOUT_CREDENTIALS = True
# The Celery queues whose depth /metrics reports (asked of the broker at scrape time, cached briefly).
APM_METRICS_QUEUES = env.list(
    "APM_METRICS_QUEUES", default=[CELERY_TASK_DEFAULT_QUEUE, CELERY_INGESTION_QUEUE]
)
# Mount /loadtest/baseline, the constant view the load scenario compares the project summary with
# (loadtests/). Off unless a load test's server asks for it.
APM_LOADTEST_BASELINE = env.bool("APM_LOADTEST_BASELINE", default=False)
# --- end of metrics ---
