"""DataLoader throughput of the three DataModules on the embedded corpus's shards (built when missing):
training samples per second with 0 and 2 loader workers, at each stage's default sample size."""

import gc
import time
from pathlib import Path

from datamodules.mdn import LandmarkDataModule
from datamodules.preprocess import preprocess
from datamodules.renderer import RenderDataModule
from datamodules.sfe import SFEDataModule
from datamodules.synthetic import ensure_default_corpus

SHARDS = Path("data/shards/synthetic")
BATCHES = 12
BATCH_SIZE = 4


def samples_per_second(datamodule) -> float:
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    samples, start, batches = 0, None, 0
    while batches < BATCHES:
        for batch in loader:
            if start is None:  # the first batch pays for worker start-up
                start = time.perf_counter()
            else:
                samples += len(batch["speaker"])
            batches += 1
            if batches == BATCHES:
                break
    rate = samples / (time.perf_counter() - start)
    del loader  # shut its persistent workers down here, not in a later loader's forked workers
    gc.collect()
    return rate


def run() -> list[dict]:
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
    return [
        {"datamodule": name, "workers": workers, "samples/s": samples_per_second(build(workers))}
        for name, build in modules.items()
        for workers in (0, 2)
    ]
