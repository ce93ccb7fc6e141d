# Two commands on a fresh machine: `make demo` and `make test`. Each bootstraps .venv first.
PY := .venv/bin/python
DEMO_DATA := datasets/toy
DEMO_NAME := toy_demo
DEMO_CHECKPOINTS := checkpoints
DEMO_RESULTS := results
SEED := 0
# A short CoopInit-CUT run on the embedded toy dataset: CPU, 2-6 minutes on 2 cores, every CoopInit
# flag at its default. What these flags trade away against a real run: README, "Quick start".
DEMO_FLAGS := --dataroot $(DEMO_DATA) --name $(DEMO_NAME) --checkpoints_dir $(DEMO_CHECKPOINTS) --seed $(SEED) --gpu_ids -1 \
	--load_size 64 --crop_size 64 --max_dataset_size 300 --ngf 16 --ndf 32 --netG resnet_6blocks --normG batch --no_antialias --lambda_NCE 2 --lambda_R1 0.1 \
	--n_epochs 4 --n_epochs_decay 2 --num_threads 1 --print_freq 50 --display_freq 50 --display_id 0 \
	--update_html_freq 50 --save_latest_freq 200

.PHONY: venv demo demo-flags test test-fast clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	$(PY) datasets/make_toy_dataset.py --out $(DEMO_DATA)
	$(PY) train.py $(DEMO_FLAGS)
	$(PY) test.py --dataroot $(DEMO_DATA) --name $(DEMO_NAME) --checkpoints_dir $(DEMO_CHECKPOINTS) \
		--results_dir $(DEMO_RESULTS) --gpu_ids -1
	$(PY) -m datasets.toy_score --dataroot $(DEMO_DATA) --results $(DEMO_RESULTS)/$(DEMO_NAME)/test_latest --gpu_ids -1
	@echo "training page: $(DEMO_CHECKPOINTS)/$(DEMO_NAME)/web/index.html (losses; per stage: input, G(x), Langevin-revised G(x), real B)"
	@echo "test results:  $(DEMO_RESULTS)/$(DEMO_NAME)/test_latest/index.html (the score above, then input | translation | real zebra)"

demo-flags:  # train.py's flags of the demo, for bench/demo_sweep.py (the Makefile stays their one place)
	@echo $(DEMO_FLAGS)

test: venv
	@bash scripts/install_browser.sh || echo "warning: chromium missing; the browser tests will be skipped"
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not browser and not slow"

clean:
	rm -rf checkpoints results $(DEMO_DATA)
