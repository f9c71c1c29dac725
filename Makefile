# Two commands do all set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean browser

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

# Chromium for the report/review browser tests; skipped with a printed reason if apt is unavailable.
browser:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && (apt-get -qq update >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get -qq install -y chromium >/dev/null 2>&1) || echo "chromium not installed (no apt-get or no permission): browser tests will skip")

demo: $(STAMP)
	$(BIN)/trainyard demo

test: $(STAMP) browser
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	@command -v apt-get >/dev/null 2>&1 && test ! -d /usr/share/datasets/fashion-mnist && (apt-get -qq update >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get -qq install -y dataset-fashion-mnist >/dev/null 2>&1) || true
	for s in benchmarks/*.py; do echo "== $$s"; $(BIN)/python $$s || exit 1; done
	echo "== benchmarks/null_data.py --clean"; $(BIN)/python benchmarks/null_data.py --clean
	echo "== benchmarks/repair.py --ablation"; $(BIN)/python benchmarks/repair.py --ablation
	echo "== benchmarks/repair.py --ceiling"; $(BIN)/python benchmarks/repair.py --ceiling
	echo "== benchmarks/repair.py beyond the named settings"; \
	$(BIN)/python benchmarks/repair.py --datasets breast_cancer --noise symmetric:0.2,symmetric:0.4,instance:0.2,instance:0.4 --out repair_general_bc && \
	$(BIN)/python benchmarks/repair.py --datasets digits,synthetic,fashion --noise instance:0.2,instance:0.4 --out repair_general_instance && \
	$(BIN)/python benchmarks/repair.py --datasets imbalanced --noise symmetric:0.2,symmetric:0.4,instance:0.2,instance:0.4 --out repair_general_imbalanced && \
	$(BIN)/python benchmarks/repair.py --datasets topics --noise symmetric:0.2,symmetric:0.4 --out repair_general_topics && \
	$(BIN)/python benchmarks/repair.py --datasets rare_events --noise to_majority:0.2,to_majority:0.4 --out repair_general_rare && \
	$(BIN)/python benchmarks/repair.py --merge benchmarks/results/repair_general_bc.json benchmarks/results/repair_general_instance.json benchmarks/results/repair_general_imbalanced.json benchmarks/results/repair_general_topics.json benchmarks/results/repair_general_rare.json --out repair_general
	echo "== benchmarks/trusted_validation.py on the larger sets"; \
	$(BIN)/python benchmarks/trusted_validation.py --datasets fashion --noise instance:0.2 --modes given,reviewed_all --out trusted_validation_fashion && \
	$(BIN)/python benchmarks/trusted_validation.py --datasets synthetic --noise symmetric:0.2 --seeds 1 --modes given,reviewed_all --out trusted_validation_synthetic_sym && \
	$(BIN)/python benchmarks/trusted_validation.py --datasets synthetic --noise symmetric:0.4,symmetric:0.2 --modes given --out trusted_validation_synthetic_sym_choice && \
	$(BIN)/python benchmarks/trusted_validation.py --datasets digits --noise symmetric:0.2,symmetric:0.4,class_conditional:0.4 --modes given,reviewed_all --out trusted_validation_digits_named
	echo "== benchmarks/label_errors.py beyond the grid: instance-dependent noise"; \
	$(BIN)/python benchmarks/label_errors.py --datasets digits,synthetic --synthetic-n 10000 --noise instance --rates 0.2,0.4 --seeds 0,1,2 --out benchmarks/results/label_errors_instance_digits_synthetic.json && \
	$(BIN)/python benchmarks/label_errors.py --datasets fashion --fashion-n 5000 --noise instance --rates 0.2,0.4 --seeds 0,1,2 --out benchmarks/results/label_errors_instance_fashion5k.json && \
	$(BIN)/python benchmarks/label_errors.py --merge benchmarks/results/label_errors_instance_digits_synthetic.json benchmarks/results/label_errors_instance_fashion5k.json --out benchmarks/results/label_errors_instance.json
	echo "== benchmarks/label_errors.py beyond the grid: short texts"; \
	$(BIN)/python benchmarks/label_errors.py --datasets topics --noise symmetric,class_conditional,instance --rates 0.2,0.4 --seeds 0,1,2 --out benchmarks/results/label_errors_topics.json

clean:
	rm -rf $(VENV) build *.egg-info
