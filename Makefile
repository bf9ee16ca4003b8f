# Portcullis: `make run` to try it, `make test` to check it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# The demo website (docs/demo, a stand-in customer site embedding the chat widget) is
# served on DEMO_PORT; the demo email inboxes send replies to an SMTP sink on DEMO_SMTP_PORT.
DEMO_PORT ?= 8001
DEMO_SMTP_PORT ?= 8025
# With REDIS_URL and nginx, pages and sockets run in separate processes on these loopback
# ports, behind nginx on PORT (config/proxy.py, docs/operations.md).
HTTP_POOL_PORT ?= 8100
SOCKET_POOL_PORT ?= 8101
NGINX ?= $(shell command -v nginx || ls /usr/sbin/nginx 2>/dev/null)
# No per-message compression on sockets: compressing a secret beside text an attacker can
# inject leaks it by frame length (as CRIME/BREACH), and at chat frame sizes it bought no
# measurable CPU (tests/benchmarks/livechat.py, LIVECHAT_BENCH_WS_DEFLATE).
UVICORN = $(VENV)/bin/uvicorn config.asgi:application --lifespan off --ws-per-message-deflate false
# The pools trust the forwarded client address from the proxy on loopback, and only there.
BEHIND_PROXY = --proxy-headers --forwarded-allow-ips 127.0.0.1
comma := ,

# Tests need real services; these are the defaults on a developer machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portcullis
# The suite empties its Redis database when it starts (tests/conftest.py): one of its own.
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test lint typecheck check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The app with demo data. Without DATABASE_URL / REDIS_URL it runs on SQLite with
# in-process tasks and an in-memory channel layer; with REDIS_URL a Celery worker
# (with beat) runs beside the server.
run: export DEBUG ?= 1
# Channels may reach loopback only on listed ports: the sink's is added to any given.
# The platform's own mail (alerts to supervisors) goes to the same sink.
run: export EMAIL_HOST ?= 127.0.0.1
run: export EMAIL_PORT ?= $(DEMO_SMTP_PORT)
run: export CHANNEL_ALLOW_PRIVATE_PORTS := $(if $(CHANNEL_ALLOW_PRIVATE_PORTS),$(CHANNEL_ALLOW_PRIVATE_PORTS)$(comma))$(DEMO_SMTP_PORT)
run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo --app-url http://$(HOST):$(PORT) --site-port $(DEMO_PORT) --smtp-port $(DEMO_SMTP_PORT)
	@echo "Inbox: http://$(HOST):$(PORT)/  Demo website with the chat widget (another origin): http://127.0.0.1:$(DEMO_PORT)/"
	@echo "Email replies from the demo inboxes land in var/demo-mail/ (a Maildir), via SMTP on 127.0.0.1:$(DEMO_SMTP_PORT)"
	@trap 'kill $$(jobs -p) 2>/dev/null' EXIT INT TERM; \
	$(PY) -m http.server $(DEMO_PORT) --bind 127.0.0.1 --directory var/demo-site >/dev/null 2>&1 & \
	$(PY) -m aiosmtpd -n -l 127.0.0.1:$(DEMO_SMTP_PORT) -c aiosmtpd.handlers.Mailbox var/demo-mail & \
	if [ -n "$$REDIS_URL" ]; then \
		echo "Starting a Celery worker with beat (REDIS_URL is set)"; \
		$(VENV)/bin/celery -A config worker --beat --loglevel=INFO --concurrency=2 & \
	fi; \
	if [ -n "$$REDIS_URL" ] && [ -n "$(NGINX)" ]; then \
		echo "Pages and sockets in separate processes (ports $(HTTP_POOL_PORT), $(SOCKET_POOL_PORT)) behind nginx on $(HOST):$(PORT)"; \
		mkdir -p var/proxy; \
		$(PY) -m config.proxy --listen $(HOST):$(PORT) --http 127.0.0.1:$(HTTP_POOL_PORT) \
			--sockets 127.0.0.1:$(SOCKET_POOL_PORT) --prefix var/proxy >var/proxy/nginx.conf; \
		ASGI_SERVES=http $(UVICORN) --host 127.0.0.1 --port $(HTTP_POOL_PORT) $(BEHIND_PROXY) & \
		ASGI_SERVES=sockets $(UVICORN) --host 127.0.0.1 --port $(SOCKET_POOL_PORT) $(BEHIND_PROXY) & \
		$(NGINX) -c $(CURDIR)/var/proxy/nginx.conf -p $(CURDIR)/var/proxy -e $(CURDIR)/var/proxy/error.log; \
	else \
		if [ -n "$$REDIS_URL" ]; then echo "nginx not found: pages and sockets share one process"; fi; \
		$(UVICORN) --host $(HOST) --port $(PORT); \
	fi

test: export DATABASE_URL ?= $(TEST_DATABASE_URL)
# Not the REDIS_URL a shell may hold for `make run`: the suite would empty that database.
test: export REDIS_URL := $(TEST_REDIS_URL)
test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed-dev
	DEBUG=1 $(VENV)/bin/mypy .

clean:
	rm -rf $(VENV) db.sqlite3 var .pytest_cache .mypy_cache .ruff_cache
