# Benchmarks: `make bench` sets up .venv with the bench extra (MONAI) if needed, then writes
# docs/benchmarks.md. Extra arguments: make bench ARGS="--only speed,training"
ARGS ?=

.PHONY: bench bench-quick

bench:  ## full run, ~27 min on 2 idle CPU cores
	./run.sh bench $(ARGS)

bench-quick:  ## smaller sizes, 3 repetitions, ~6 min
	./run.sh bench --quick $(ARGS)
