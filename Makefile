# The two commands of the README's quick start:
#   make run   install, migrate, queue the first-run job (import the shared sets the catalog lacks, train a
#              model if none is active) for the jobs worker, then start the site (http://127.0.0.1:8000) and
#              the Celery workers at once; the site shows the job's progress (manage.py bootstrap)
#   make test  install and run the whole test suite (PostgreSQL and Redis on 127.0.0.1)
# Installs are skipped when requirements have not changed (a stamp file per requirements hash).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

# Tests talk to the real services; override these to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/sneakers
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test install lint bench migrate worker web

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py bootstrap
	@echo "Site: http://$${SNEAKERS_BIND:-127.0.0.1:8000}  (Ctrl-C stops the site and the workers)"
# prometheus-client's multi-process files belong to the processes of one start (its documentation: empty the
# folder before the web service starts), so /metrics never adds up counters of processes long gone.
	rm -rf "$${SNEAKERS_METRICS_MULTIPROC_DIR:-$${SNEAKERS_VAR_DIR:-var}/prometheus}"
# The Procfile's gunicorn binds with SO_REUSEPORT (each worker its own socket, so the kernel spreads connections
# over them), which would also let it share the port with a site still running there: refuse that instead.
	$(BIN)/python -c "import socket, sys; host, port = '$${SNEAKERS_BIND:-127.0.0.1:8000}'.rsplit(':', 1); \
	host = host.strip('[]') or '127.0.0.1'; probe = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET); \
	probe.settimeout(1); sys.exit(f'Something already listens on {host}:{port} (another make run?); stop it or \
	set SNEAKERS_BIND.' if probe.connect_ex((host, int(port))) == 0 else 0)"
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/honcho start -f Procfile

test: install
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/bench_ml.py

# Speed side by side with a seed-style synchronous app (benchmarks/bench_speed.py; needs an active model in
# var/, i.e. after `make run`), and the embedded stack's soak test (30 minutes of uploads, tiny model).
.PHONY: bench-speed soak
bench-speed: install
	$(BIN)/python benchmarks/bench_speed.py

soak: install
	$(BIN)/python benchmarks/soak.py --minutes 30 --kill-worker-every 600
