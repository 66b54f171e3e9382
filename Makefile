# APM developer commands. `make run` and `make test` are the two that matter; see README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Each leg of the suite runs on pytest-xdist workers, one more than the cores: tests also wait (git, Celery
# workers, the database servers). worksteal lets an idle worker take tests queued on a busy one, so the
# few 10-25 s tests do not leave one worker finishing alone. tests/isolation.py keeps the workers, and
# other runs on the same servers, apart. `make test XDIST=` runs each leg in one process.
XDIST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 1) + 1 )))
XDIST ?= -n $(XDIST_WORKERS) --dist worksteal

# Test servers on this machine (CI starts them; see .ci/run).
PG_URL ?= postgres://postgres@127.0.0.1:5432/apm
MARIADB_URL ?= mysql://root@127.0.0.1:3306/apm
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run serve test test-postgres test-sqlite test-mariadb lint format check-deploy clean api-check loadtest

$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $@

install: $(VENV)/.installed

## Set up the embedded default (SQLite, local cache, eager Celery), load the demo, ingest APM's own
## git history into the demo's APM project (incrementally on every run), print the admin login last
## and serve it. A taken address stops it first, before anything is installed or written.
RUN_ADDRESS ?= 127.0.0.1:8000
run:
	@$(PYTHON) -c 'import socket; host, port = "$(RUN_ADDRESS)".rsplit(":", 1); \
		listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
		listener.bind((host, int(port)))' 2>/dev/null || { \
		echo "make run: $(RUN_ADDRESS) is already in use (another make run?). Stop that server, or serve" \
			"elsewhere: make run RUN_ADDRESS=127.0.0.1:8001" >&2; exit 1; }
	@$(MAKE) --no-print-directory --silent install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --no-login
	$(PY) manage.py ingest_repo "$(CURDIR)" --project APM --name apm
	@$(PY) manage.py demo_login --address $(RUN_ADDRESS)
	@$(MAKE) --no-print-directory serve

serve:
	$(PY) manage.py runserver $(RUN_ADDRESS)

## The whole suite: on PostgreSQL + Redis when they answer, always on SQLite, and on MariaDB when it
## answers and its driver is installed. With APM_REQUIRE_SERVICES=1 (CI) a missing server fails.
test: install
	@if $(PY) -m tests.services postgres redis; then \
		$(MAKE) --no-print-directory test-postgres; \
	elif [ "$$APM_REQUIRE_SERVICES" = "1" ]; then exit 1; \
	else echo "== PostgreSQL/Redis not running here: that leg is left out"; fi
	@$(MAKE) --no-print-directory test-sqlite
	@if $(PY) -m tests.services mariadb; then \
		$(MAKE) --no-print-directory test-mariadb; \
	elif [ "$$APM_REQUIRE_SERVICES" = "1" ]; then exit 1; \
	else echo "== MariaDB (or its driver, requirements/mysql.txt) not here: that leg is left out"; fi

test-postgres: install
	@echo "== tests on PostgreSQL + Redis"
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-sqlite: install
	@echo "== tests on the embedded default (SQLite, local-memory cache)"
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-mariadb: install
	@echo "== tests on MariaDB"
	DATABASE_URL=$(MARIADB_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --config .importlinter
	$(PY) -m mypy
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

## The API against a live gunicorn on the embedded default: the schema validated with --fail-on-warn,
## the curl walk-through of docs/api.md run as written, and Schemathesis over every route (.ci/api-check).
api-check: install
	PY=$(PY) bash .ci/api-check

## The load scenarios (loadtests/scenario.py; docs/performance.md, "Load scenarios"): APM started as
## deployed on 127.0.0.1 (PostgreSQL, a redis-server of its own, gunicorn with the production settings, a
## Celery worker), Locust's users (loadtests/locustfile.py) against it, everything stopped after; report
## in var/loadtest/$(SCENARIO)/. SCENARIO=smoke (CI: any error fails), load (p95 < 100 ms, no error,
## summary >= 50 % of a constant-JSON view), stress (the knee), soak (memory and p95 flat).
## LOADTEST_ARGS: --minutes N (load, soak), --users N, --database-url URL (dropped and made anew).
SCENARIO ?= smoke
LOADTEST_ARGS ?=
.venv-loadtest/.installed: requirements/loadtest.txt
	$(PYTHON) -m venv .venv-loadtest
	.venv-loadtest/bin/python -m pip install --quiet -r requirements/loadtest.txt
	touch $@

loadtest: install .venv-loadtest/.installed
	$(PY) loadtests/scenario.py $(SCENARIO) $(LOADTEST_ARGS)

# With a bucket, as k8s/configmap.yaml deploys it: without one the export storage check (apm.W050) warns.
check-deploy: install
	DJANGO_SETTINGS_MODULE=config.settings.production DJANGO_SECRET_KEY=check-deploy-$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n') \
		AWS_STORAGE_BUCKET_NAME=apm-exports AWS_S3_ENDPOINT_URL=https://objects.example.com \
		DJANGO_ALLOWED_HOSTS=apm.example.com APM_METRICS_TOKEN=check-deploy-metrics-token-not-a-secret CELERY_BROKER_URL=redis://broker.example.com:6379/0 \
		$(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) var/*.sqlite3* var/cache .pytest_cache .ruff_cache

## Offline checks of the deployment files (docs/deploy.md): hadolint on the Dockerfile,
## kubernetes-validate --strict on every manifest in k8s/ but the CRDs (tests/deploy checks the Gateway API
## objects), checkov on k8s/ and the Dockerfile, promtool on the alert rules and their unit
## tests, nginx -t on k8s/nginx.conf; the kustomization is also built when kubectl is here. The PyPI tools
## are pinned in requirements/deploy.txt; promtool and nginx come from Debian (`make deploy-tools`, root).
.PHONY: deploy-check deploy-tools
# Custom resources (CRDs) kubernetes-validate has no schema for, checked another way below.
DEPLOY_CRD_MANIFESTS := k8s/gateway.yaml
DEPLOY_MANIFESTS := $(filter-out k8s/kustomization.yaml k8s/pgbouncer/kustomization.yaml $(DEPLOY_CRD_MANIFESTS),$(sort $(wildcard k8s/*.yaml k8s/pgbouncer/*.yaml)))
# Empty: the newest Kubernetes schema kubernetes-validate ships. Set it to your cluster's (e.g. 1.33.0).
KUBERNETES_VERSION ?=

$(VENV)/.deploy-installed: requirements/deploy.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements/deploy.txt
	touch $@

# checkov pins packages the application uses in other versions: a virtualenv of its own.
CHECKOV_VENV ?= .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download
$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements/checkov.txt
	touch $@

deploy-tools:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v nginx >/dev/null || missing="$$missing nginx"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "promtool, nginx and openssl are installed"; fi

deploy-check: $(VENV)/.deploy-installed $(CHECKOV_VENV)/.installed
	@set -e; started=$$(date +%s); \
	for tool in promtool nginx openssl; do \
		command -v $$tool >/dev/null || { echo "deploy-check: $$tool not found; run 'make deploy-tools' (as root) first" >&2; exit 1; }; \
	done; \
	echo "== hadolint Dockerfile ($$($(VENV)/bin/hadolint --version))"; \
	$(VENV)/bin/hadolint Dockerfile; \
	echo "== kubernetes-validate --strict ($$($(VENV)/bin/kubernetes-validate --version))"; \
	$(VENV)/bin/kubernetes-validate --strict --quiet $(if $(KUBERNETES_VERSION),-k $(KUBERNETES_VERSION)) $(DEPLOY_MANIFESTS); \
	echo "   $(words $(DEPLOY_MANIFESTS)) files valid"; \
	echo "== Gateway API objects and network policies (tests/deploy: $(DEPLOY_CRD_MANIFESTS))"; \
	$(PY) -m pytest -q -p no:cacheprovider tests/deploy; \
	echo "== checkov k8s/ and Dockerfile ($$($(CHECKOV_VENV)/bin/checkov --version); skipped checks: docs/deploy.md)"; \
	$(CHECKOV) --framework kubernetes -d k8s; \
	$(CHECKOV) --framework dockerfile -f Dockerfile; \
	if command -v kubectl >/dev/null; then \
		echo "== kubectl kustomize k8s/ | kubernetes-validate --strict"; \
		kubectl kustomize k8s/ >$(VENV)/.deploy-kustomized.yaml; \
		$(VENV)/bin/kubernetes-validate --strict --quiet $(if $(KUBERNETES_VERSION),-k $(KUBERNETES_VERSION)) $(VENV)/.deploy-kustomized.yaml; \
		echo "   kustomization builds and validates (the Gateway API kinds warned about: tests/deploy above)"; \
		echo "== checkov on the kustomize build"; \
		$(CHECKOV) --framework kubernetes -f $(VENV)/.deploy-kustomized.yaml; \
		echo "== k8s/ with the k8s/pgbouncer component | kubernetes-validate --strict"; \
		mkdir -p var/deploy-check/pgbouncer; \
		printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../../k8s]\ncomponents: [../../../k8s/pgbouncer]\n' \
			>var/deploy-check/pgbouncer/kustomization.yaml; \
		kubectl kustomize var/deploy-check/pgbouncer >$(VENV)/.deploy-kustomized-pgbouncer.yaml; \
		$(VENV)/bin/kubernetes-validate --strict --quiet $(if $(KUBERNETES_VERSION),-k $(KUBERNETES_VERSION)) $(VENV)/.deploy-kustomized-pgbouncer.yaml; \
		echo "   the PgBouncer overlay builds and validates"; \
	else echo "== kustomize builds (and checkov on them) skipped: kubectl is not installed (no Debian/PyPI/npm package of its own)"; fi; \
	echo "== promtool ($$(promtool --version 2>&1 | head -n1))"; \
	promtool check rules monitoring/alerts.yml; \
	promtool test rules monitoring/alerts_test.yml; \
	echo "== k8s/monitoring/ (Prometheus Operator CRDs: generated rule in sync, shape checked)"; \
	$(PY) -m monitoring.prometheusrule --check; \
	$(PY) -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"], sys.stdout)' \
		k8s/monitoring/prometheusrule.yaml >$(VENV)/.deploy-prometheusrule.yml; \
	promtool check rules $(VENV)/.deploy-prometheusrule.yml; \
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -q -p no:cacheprovider tests/monitoring/test_prometheus_operator.py; \
	echo "== nginx -t k8s/nginx.conf"; \
	bash k8s/nginx-check.sh; \
	echo "== deploy-check passed in $$(( $$(date +%s) - started ))s"
