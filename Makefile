# Two set-up commands: `make run` (the main job on embedded data) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TIER   ?= imap
# Debian packages the tests drive for real: makemap/newaliases, the m4 configs, useradd,
# unshare, opendkim with miltertest (the tier in a box), promtool (the alerting rules) and
# openssl (a certificate for the long poll's TLS test).
DEBS   := sendmail-bin sendmail-cf m4 passwd util-linux opendkim opendkim-tools miltertest \
          prometheus openssl

export CERT_DOMAIN ?= cabal.example
export IMAP_INTERNAL_HOST ?= imap.cabal.internal

.PHONY: run render test e2e lint deps bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The daemon against an embedded AWS stand-in, with its files under ./demo-root.
run: $(STAMP)
	TIER=$(TIER) $(BIN)/python -m tests.support.demo --root demo-root

# The dry run: render the bundled scan file into ./out.
render: $(STAMP)
	$(BIN)/reconfigure render --tier $(TIER) --scan-file tests/support/addresses.json --root out

# Installs the Debian packages only when missing; a policy-rc.d keeps apt from
# starting a sendmail daemon that no test asked for.
deps:
	@if [ ! -x /usr/sbin/makemap ] || [ ! -x /usr/sbin/useradd ] || ! command -v unshare >/dev/null \
	   || [ ! -x /usr/sbin/opendkim ] || [ ! -x /usr/bin/miltertest ] || [ ! -x /usr/bin/promtool ] \
	   || ! command -v openssl >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  POLICY=/usr/sbin/policy-rc.d; ADDED=; \
	  if [ ! -e $$POLICY ]; then printf '#!/bin/sh\nexit 101\n' | $$SUDO tee $$POLICY >/dev/null; \
	    $$SUDO chmod 755 $$POLICY; ADDED=1; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEBS); \
	  rc=$$?; [ -z "$$ADDED" ] || $$SUDO rm -f $$POLICY; exit $$rc; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict

test: deps $(STAMP) lint
	$(BIN)/pytest -q

# Just the tier in a box (tests/e2e; `make test` runs them too): a real supervisord, sendmail,
# opendkim and the daemon against moto, in private namespaces (root). -s prints the timings.
e2e: deps $(STAMP)
	$(BIN)/pytest -q -s tests/e2e

bench: $(STAMP)
	$(BIN)/python bench/render.py

clean:
	rm -rf $(VENV) out demo-root dist build .mypy_cache .ruff_cache .pytest_cache .hypothesis
