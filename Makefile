# The README's two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LUXFACT_PORT ?= 8000
LUXFACT_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export LUXFACT_TEST_POSTGRES_URL

.PHONY: run test install system-tools lint audit test-sqlite test-postgres bench clean vendor

# Re-install whenever the project's dependency files change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) system-tools

# Debian tools the tests drive: zbarimg (QR decoding), pdftotext and pdftoppm for the
# PDFs, Chromium for the desk's browser tests (Playwright drives /usr/bin/chromium; it
# never downloads a browser of its own). Installed only when missing; without root and
# apt-get (or sudo) it only warns.
SYSTEM_PACKAGES = zbar-tools poppler-utils chromium fonts-dejavu-core
system-tools:
	@if command -v zbarimg >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1 \
		&& command -v pdftoppm >/dev/null 2>&1 && test -x /usr/bin/chromium; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(SYSTEM_PACKAGES); \
	elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
		&& sudo -n true 2>/dev/null; then \
		sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	else \
		echo "!! WARNING: zbarimg/pdftotext/pdftoppm/chromium missing and cannot be installed here;"; \
		echo "!! install the Debian packages $(SYSTEM_PACKAGES), or the PDF and browser tests skip."; \
	fi

run: install
	$(BIN)/luxfact db upgrade
	$(BIN)/luxfact tenants sync
	$(BIN)/luxfact demo
	@echo
	@echo "Luxfact is starting on http://127.0.0.1:$(LUXFACT_PORT)/"
	@echo "  API:    http://127.0.0.1:$(LUXFACT_PORT)/api/v1/  (Authorization: Bearer <a demo key above>)"
	@echo "  Health: http://127.0.0.1:$(LUXFACT_PORT)/readyz"
	@echo
	$(BIN)/luxfact serve --port $(LUXFACT_PORT)

lint: install
	$(BIN)/ruff check .

# Known vulnerabilities in the pinned dependencies; offline, it says so and does not fail.
audit: install
	$(BIN)/python .ci/audit_dependencies.py constraints.txt

test-sqlite: install
	LUXFACT_TEST_DB=sqlite $(BIN)/pytest -q

# Runs only when a PostgreSQL answers; otherwise says so, loudly and last.
test-postgres: install
	@if $(BIN)/python -m luxfact.db.reachable "$(LUXFACT_TEST_POSTGRES_URL)"; then \
		echo "== PostgreSQL run ($(LUXFACT_TEST_POSTGRES_URL))"; \
		LUXFACT_TEST_DB=postgres $(BIN)/pytest -q; \
	else \
		echo; \
		echo "!! PostgreSQL run SKIPPED: no PostgreSQL answers at $(LUXFACT_TEST_POSTGRES_URL)"; \
		echo "!! (set LUXFACT_TEST_POSTGRES_URL, or start one, to run the suite on it)"; \
	fi

test: lint audit test-sqlite test-postgres

bench: install
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# The desk's htmx, from the npm registry, checked against the SHA-256 recorded in
# luxfact/web/static/vendor/README.md (run by hand when upgrading; the file is committed).
HTMX_VERSION = 2.0.11
HTMX_SHA256 = d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717
vendor:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent htmx.org@$(HTMX_VERSION) >/dev/null \
		&& tar xzf htmx.org-$(HTMX_VERSION).tgz \
		&& echo "$(HTMX_SHA256)  package/dist/htmx.min.js" | sha256sum -c --quiet \
		&& cp package/dist/htmx.min.js $(CURDIR)/luxfact/web/static/vendor/htmx.min.js \
		&& cp package/LICENSE $(CURDIR)/luxfact/web/static/vendor/htmx.LICENSE \
		&& rm -rf $$tmp && echo "htmx $(HTMX_VERSION) vendored"

clean:
	rm -rf $(VENV) var .pytest_cache tests/artifacts
