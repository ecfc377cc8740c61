.PHONY: setup test demo
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
demo: setup
	mdi-mlmm demo
