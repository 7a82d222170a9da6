# The two commands of the README:  make reproduce  (main job)  and  make test  (test suite).
# Each creates or refreshes the local virtual environment .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MMQ_DATA_DIR ?= ./data
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv reproduce test data-stats fault-matrix clean-cache serve serve-capstone capstone

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Main job: regenerate the tables. Finished runs (committed report.json + DONE) are reused, so this
# takes about a minute. TRAIN_MISSING=1 also trains whatever run is missing (chapter-7 image tower ~23 min,
# MMQ stage 1 ~1-4 min a run, Beauty generative retrieval ~20-25 min a run, SASRec ~10-40 min a run,
# MovieLens ranking ~1 min (frozen SIDs) / ~3-6 min (behavior fine-tuning), MovieLens generative ~7 min a run
# (~5-9 min a generative fine-tuning run), Beauty generative fine-tuning ~20-30 min a run on 2 cores,
# the chapter-3 ANN benchmark ~35 min (run it on idle cores), chapter-6 multiphase ~10-20 min a task).
reproduce: $(STAMP)
	$(PY) scripts/table_ch1_dense_retrieval.py --config experiments/ch1/beauty_dense_retrieval.yaml
	$(PY) scripts/table_beauty_tokenizer_quality.py
	@if [ -n "$(TRAIN_MISSING)" ]; then $(PY) scripts/run.py experiments/ch7/myntra_image_tower.yaml; fi
	$(PY) scripts/table_ch7_cross_modal.py
	$(PY) scripts/table_tokenizer_quality.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_beauty_generative.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_movielens_ranking.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_movielens_generative.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_beauty_matched.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_stage2_study.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_movielens_multi_event.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_orthogonality.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_ch2_two_tower.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_ch4_rerank.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_ch3_ann_pareto.py $(if $(TRAIN_MISSING),,--no-train)
	$(PY) scripts/table_ch6_multiphase.py $(if $(TRAIN_MISSING),,--no-train)

test: $(STAMP)
	$(PY) -m pytest -q

# The search API on 127.0.0.1:8000 (the chapter-2 two-tower run must exist with its weights); Ctrl-C stops it.
serve: $(STAMP)
	$(PY) scripts/serve.py baselines/serving/myntra_search.yaml

serve-capstone: $(STAMP)
	$(PY) scripts/serve.py baselines/serving/capstone_serving.yaml

capstone: $(STAMP)
	$(PY) scripts/capstone.py

fault-matrix: $(STAMP)
	$(PY) scripts/fault_matrix.py

data-stats: $(STAMP)
	$(PY) scripts/prepare_data.py --all

clean-cache:
	rm -rf cache
