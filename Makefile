# Two commands on a fresh machine: `make demo` and `make test`. Each bootstraps .venv first.
PY := .venv/bin/python
DEMO_DATA := datasets/toy
DEMO_NAME := toy_demo
# A short CoopInit-CUT run on the embedded toy dataset (CPU, a few minutes on 2 cores).
DEMO_FLAGS := --dataroot $(DEMO_DATA) --name $(DEMO_NAME) --gpu_ids -1 --load_size 64 --crop_size 64 \
	--ngf 32 --ndf 32 --netG resnet_6blocks --n_epochs 2 --n_epochs_decay 1 --max_dataset_size 150 \
	--coop_epochs 0.5 --num_threads 1 --print_freq 25 --display_freq 25 --update_html_freq 50 \
	--save_latest_freq 100

.PHONY: venv demo test test-fast clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	$(PY) datasets/make_toy_dataset.py --out $(DEMO_DATA)
	$(PY) train.py $(DEMO_FLAGS)
	$(PY) test.py --dataroot $(DEMO_DATA) --name $(DEMO_NAME) --gpu_ids -1
	$(PY) -m datasets.toy_score --dataroot $(DEMO_DATA) --results results/$(DEMO_NAME)/test_latest --gpu_ids -1
	@echo "training page: checkpoints/$(DEMO_NAME)/web/index.html (losses; per stage: input, G(x), Langevin-revised G(x), real B)"
	@echo "test results:  results/$(DEMO_NAME)/test_latest/index.html (the score above, then input | translation | real zebra)"

test: venv
	@bash scripts/install_browser.sh || echo "warning: chromium missing; the browser tests will be skipped"
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not browser and not slow"

clean:
	rm -rf checkpoints results $(DEMO_DATA)
