# `make run` starts the server, `make test` runs every check; both install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENDOR := src/majlis/web/static/vendor/hls.min.js
PORT ?= 8080
DATA ?= var

.PHONY: run test lint unit bench deps system-deps clean

$(BIN)/.installed: pyproject.toml
	@bash scripts/system-deps.sh base
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(VENDOR): package.json package-lock.json Makefile
	@bash scripts/system-deps.sh node
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(dir $@)
	# hls.js 1.7.4 reads the segment number of the part it has just appended as `sn || -1`, so
	# a part of segment 0 counts as no part: it forgets the segment it is filling, reloads that
	# segment's last part in a loop and stalls 1-4 s at its end under every listener who
	# started inside a space's first segment. Until upstream reads it as `?? -1`, the build
	# does, and stops when the expression is no longer there (a new hls.js: check again).
	sed 's/var o=(null==n?void 0:n.fragment.sn)||-1;/var o=null==n?-1:n.fragment.sn;/' \
	  node_modules/hls.js/dist/hls.min.js > $@.tmp
	grep -q 'var o=null==n?-1:n.fragment.sn;' $@.tmp
	mv $@.tmp $@

deps: $(BIN)/.installed $(VENDOR)

run: deps
	$(BIN)/majlis serve --host 127.0.0.1 --port $(PORT) --data $(DATA)

system-deps:
	@bash scripts/system-deps.sh test

lint: deps
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: deps system-deps lint
	bash scripts/test.sh

bench: deps system-deps
	bash scripts/test.sh --bench $(ARGS)

clean:
	rm -rf $(VENV) node_modules $(dir $(VENDOR))
