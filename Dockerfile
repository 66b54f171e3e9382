# syntax=docker/dockerfile:1
# APM's one image, for its three processes (docs/operations.md, "Deploying"):
#   web     the default command: gunicorn config.wsgi:application on :8000 (gunicorn.conf.py)
#   worker  celery -A config worker -Q celery -l info       (webhooks, exports, the schedule's passes)
#           celery -A config worker -Q ingestion -l info    (every ingestion task)
#   beat    celery -A config beat -l info
# Linted offline by `make deploy-check` (hadolint).
#
# Base: python:3.11-slim with its Debian release spelled out (trixie), so that the loose apt pins below
# (major versions, asked for by hadolint's DL3008) keep meaning the same packages. Moving to the next
# Debian release is a deliberate change of this tag and of those pins together.

# --- builder: compile the dependencies into a virtual environment -------------------------------------
FROM python:3.11-slim-trixie AS builder

# mysqlclient (requirements/mysql.txt) compiles against libmariadb; nothing of this stage is shipped.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential=12.* \
        libmariadb-dev=1:11.* \
        pkg-config=1.8.* \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

COPY requirements/ /tmp/requirements/
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir -r /tmp/requirements/prod.txt -r /tmp/requirements/mysql.txt

# --- runtime: the virtual environment, the application, git ------------------------------------------
FROM python:3.11-slim-trixie

# git: ingestion runs the git CLI (repos/git.py). libmariadb3: the shared library mysqlclient loads.
# postgresql-client (pg_dump, pg_restore) and mariadb-client (mysqldump, mysql): `manage.py backup` and
# `restore` (apm/backups.py, the CronJob of k8s/backup-cronjob.yaml). pg_dump must be at least as new as
# the server: 17 dumps every PostgreSQL up to 17.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        git=1:2.* \
        libmariadb3=1:11.* \
        mariadb-client=1:11.* \
        postgresql-client-17=17.* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 apm \
    && useradd --system --uid 10001 --gid apm --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin apm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    PATH=/opt/venv/bin:$PATH

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The application stays owned by root: the process running it can read it, not change it.
COPY . /app

# Static files are collected once, into the image (WhiteNoise serves them). The secret and host below
# exist for this one command only: the settings refuse to load without them, and they never reach the
# running containers, which get theirs from the environment (the broker is never contacted here).
RUN DJANGO_SECRET_KEY=collectstatic-build-only DJANGO_ALLOWED_HOSTS=localhost \
    CELERY_BROKER_URL=redis://collectstatic-build-only.invalid:6379/0 \
    python manage.py collectstatic --noinput

# django-prometheus under gunicorn: every worker process writes its metrics to files here and /metrics
# adds them up (prometheus_client multiprocess mode). Set after collectstatic, so that no file written
# at build time is ever counted. gunicorn.conf.py empties it when the server starts.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=4
RUN mkdir -p /tmp/prometheus && chown 10001:10001 /tmp/prometheus

USER 10001:10001
EXPOSE 8000

# Liveness of the web process (no curl in the slim image). /healthz touches no dependency. Django only
# answers hosts it allows, so the probe presents the first of DJANGO_ALLOWED_HOSTS. The worker and beat
# serve no HTTP: run them with --no-healthcheck (compose: `healthcheck: {disable: true}`); Kubernetes
# ignores HEALTHCHECK and uses the probes in k8s/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; h = os.environ.get('DJANGO_ALLOWED_HOSTS', '').split(',')[0].strip().lstrip('.*') or 'localhost'; r.urlopen(r.Request('http://127.0.0.1:8000/healthz', headers={'Host': h}), timeout=4)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py", "config.wsgi:application"]
