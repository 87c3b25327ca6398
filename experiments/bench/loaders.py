"""DataLoader throughput of the three DataModules on the embedded corpus's shards (built when missing):
training samples per second with 0 and 2 loader workers, at each stage's default sample size, counting the
DataModule's ``on_after_batch_transfer`` (uint8 -> float and the SFE's colour augmentation; here on the CPU,
on a GPU in training), and the megabytes of one batch as it leaves the workers (shared memory per batch)."""

import gc
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from datamodules.mdn import LandmarkDataModule
from datamodules.preprocess import preprocess
from datamodules.renderer import RenderDataModule
from datamodules.sfe import SFEDataModule
from datamodules.synthetic import ensure_default_corpus
from experiments.bench import Options
from experiments.bench.report import Row

SHARDS = Path("data/shards/synthetic")
BATCHES = 24
BATCH_SIZE = 4


def megabytes(batch: dict) -> float:
    return sum(value.numel() * value.element_size() for value in batch.values() if torch.is_tensor(value)) / 2**20


def measure(datamodule) -> dict:
    """Samples per second over BATCHES training batches after the first (which pays for worker start-up), and
    the size of a batch as the workers ship it."""
    datamodule.setup("fit")
    datamodule.trainer = SimpleNamespace(training=True)  # as under Trainer.fit: augmentation on
    loader = datamodule.train_dataloader()
    samples, start, batches, size = 0, None, 0, 0.0
    while batches <= BATCHES:
        for batch in loader:
            size = megabytes(batch)
            datamodule.on_after_batch_transfer(batch, 0)
            if start is None:
                start = time.perf_counter()
            else:
                samples += len(batch["speaker"])
            batches += 1
            if batches > BATCHES:
                break
    rate = samples / (time.perf_counter() - start)
    del loader  # shut its persistent workers down here, not in a later loader's forked workers
    gc.collect()
    return {"samples/s": rate, "MB/batch": size}


def run(options: Options) -> list[Row]:
    if not (SHARDS / "index.json").exists():
        preprocess(ensure_default_corpus(), "lrs3", SHARDS)
    modules = {
        "SFE, mouth 96x96, T=8": lambda workers: SFEDataModule(str(SHARDS), batch_size=BATCH_SIZE, num_workers=workers),
        "SFE, face 256x256, T=8": lambda workers: SFEDataModule(
            str(SHARDS), visual_input="face", batch_size=BATCH_SIZE, num_workers=workers
        ),
        "landmarks, 32 frames": lambda workers: LandmarkDataModule(
            str(SHARDS), batch_size=BATCH_SIZE, num_workers=workers
        ),
        "renderer pairs": lambda workers: RenderDataModule(str(SHARDS), batch_size=BATCH_SIZE, num_workers=workers),
    }
    rows = []
    for name, build in modules.items():
        for workers in (0, 2):
            measured = measure(build(workers))
            rows.append(Row(f"{name}, {workers} workers", measured["samples/s"], "samples/s"))
        rows.append(Row(f"{name}, one batch as the workers ship it", measured["MB/batch"], "MB"))
    return rows
