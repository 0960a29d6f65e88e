# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PACKAGES := iproute2 nftables shellcheck procps
APT_COMMANDS := ip nft shellcheck sysctl

.PHONY: demo test lint soak bench clean sysdeps

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Root only (CI runs as root): install the kernel tools the lab and the guest-script tests need.
sysdeps:
	@if [ "$$(id -u)" = "0" ]; then \
	  missing=""; for c in $(APT_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing apt packages (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  fi; \
	else echo "not root: skipping apt packages; root-only tests will skip and say why"; fi

demo: $(STAMP)
	$(VENV)/bin/egressctl demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

test: sysdeps $(STAMP) lint
	$(PY) -m pytest -m "not soak" -q

soak: sysdeps $(STAMP)
	$(PY) -m pytest -m soak -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
