# pstn-bridge: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Debian packages the tests drive as real peers (see ../shared/PEERS.md).
DEB_PACKAGES := sip-tester stunnel4 baresip-core openssl chromium espeak-ng fonts-dejavu-core iproute2 \
	mosquitto mosquitto-clients postgresql docker-compose testssl.sh
DEB_COMMANDS := sipp stunnel baresip openssl chromium espeak-ng ip mosquitto mosquitto_sub \
	pg_ctlcluster docker-compose testssl
# pytest runs in a new network namespace that has only `lo` (../shared/PEERS.md section 12):
# no test can reach past 127.0.0.0/8 and ::1, not even Chromium, which gathers ICE candidates
# on every interface it sees. Non-root users get a user namespace for it.
NETNS := unshare --net $(if $(filter 0,$(shell id -u)),,--map-root-user) \
	sh -c 'ip link set lo up && exec "$$@"' netns
# The dialer page's JsSIP, bundled from npm (package.json + package-lock.json); build output.
JSSIP_BUNDLE := bridge/static/jssip.bundle.js

.PHONY: run test lint format system-deps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q -e . --group test --group lint
	touch $@

$(JSSIP_BUNDLE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build
	touch $@

run: $(STAMP) $(JSSIP_BUNDLE)
	$(VENV)/bin/pstn-bridge serve $(ARGS)

system-deps:
	@missing=""; for c in $(DEB_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages for:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      -o DPkg::Lock::Timeout=120 --no-install-recommends $(DEB_PACKAGES); \
	  else \
	    echo "missing test peers:$$missing; install as root: apt-get install $(DEB_PACKAGES)" >&2; exit 1; \
	  fi; \
	fi

# The benchmarks (README "Benchmark"): per-stage media costs, transcoding, Opus quality, then
# the call benchmark (`pstn-bridge bench`); BENCH_ARGS go to the call benchmark, e.g.
# BENCH_ARGS="--calls 50 --find-max". Results in var/bench/.
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	$(PY) -m tests.bench.media_bench
	$(PY) -m tests.bench.transcode_bench
	$(PY) -m tests.bench.quality_bench
	$(PY) -m tests.bench.call_bench $(BENCH_ARGS)

# Coverage-guided fuzzing (tests/fuzz, README "Fuzzing"): every target for SECONDS seconds,
# FUZZ_JOBS at a time; corpora, logs and crashes in var/fuzz/<target>/.
SECONDS ?= 60
FUZZ_JOBS ?= 2
.PHONY: fuzz
fuzz: $(STAMP)
	$(PY) -m tests.fuzz --seconds $(SECONDS) --jobs $(FUZZ_JOBS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(STAMP) $(JSSIP_BUNDLE) system-deps lint
	$(NETNS) $(VENV)/bin/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache node_modules $(JSSIP_BUNDLE)
