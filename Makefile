.PHONY: install test lint bench bench-datapath bench-hf

install:
	python3 -m pip install -e '.[test]'

test:
	python3 -m coverage run -m pytest -q && python3 -m coverage combine -q && python3 -m coverage report

lint:
	python3 -m ruff check dlengine tests bench bin harness
	python3 -m ruff format --check dlengine tests bench bin harness
	python3 -m mypy

bench:
	python3 bench/bench.py

# dlengine's HTTP data path against rclone and aria2c (needs root: network namespaces)
bench-datapath:
	python3 bench/datapath.py

# HF Hub: dlengine vs huggingface_hub.snapshot_download on a fake Hub (bench/RESULTS-hf.md)
bench-hf:
	python3 bench/hf_bench.py
