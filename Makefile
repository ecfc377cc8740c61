.PHONY: setup test demo bench
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	python3 bench/bench_mdi_latency.py && python3 bench/bench_lammps.py && python3 bench/bench_gromacs.py
