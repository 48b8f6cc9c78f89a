# Benchmarks (need the bench extra: pip install -e '.[bench]'). Tables go to docs/benchmarks.md.
PY ?= .venv/bin/python

.PHONY: bench bench-quick

bench:  ## full run, ~20-25 min on 2 CPU cores
	$(PY) benchmarks/bench.py

bench-quick:  ## smaller sizes, 3 repetitions, ~6 min
	$(PY) benchmarks/bench.py --quick
