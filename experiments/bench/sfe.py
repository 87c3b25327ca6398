"""SFE pretraining speed: training steps per second at the paper's model size, and the sync loss's cost.

Training: batch 4 clips of T=8 steps with 5 frames per step, 96x96 mouth crops and 256x256 whole faces,
fp32 and bf16-mixed; a full Lightning step (forward, backward, Adam update) on a batch held in memory, so
data loading is not measured; a few warm-up steps, then the timed ones. Sync loss: the vectorised
``SyncInfoNCE`` against a per-clip loop of the same loss, forward and backward.
"""

import time

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils import benchmark
from torch.utils.data import DataLoader, Dataset

from lightning_modules.losses import ScaledCosine, SyncInfoNCE
from lightning_modules.sfe import SFEPretraining

BATCH, STEPS, FRAMES, FEATURES = 4, 8, 5, 128
WARMUP_STEPS, TIMED_STEPS = 2, 5
INPUTS = {"mouth 96x96": 96, "face 256x256": 256}
PRECISIONS = ("32-true", "bf16-mixed")


class RepeatedBatch(Dataset):
    """The same contract batch ``length`` times (already batched: use ``batch_size=None``)."""

    def __init__(self, image_size: int, length: int):
        self.batch = {
            "audio": torch.rand(BATCH, STEPS, 20, 80),
            "frames": torch.rand(BATCH, STEPS, FRAMES, 3, image_size, image_size),
            "speaker": torch.arange(BATCH),
        }
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.batch


class StepTimer(Callback):
    """Wall time from the start of the first timed step to the end of the last (after the optimiser update)."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start = self.end = 0.0

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = self._now()


def training_steps_per_second(image_size: int, precision: str) -> float:
    seed_everything(0, verbose=False)
    timer = StepTimer(WARMUP_STEPS)
    trainer = Trainer(
        accelerator="auto",
        devices=1,
        precision=precision,
        max_steps=WARMUP_STEPS + TIMED_STEPS,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    data = DataLoader(RepeatedBatch(image_size, WARMUP_STEPS + TIMED_STEPS), batch_size=None)
    trainer.fit(SFEPretraining(), data)
    return TIMED_STEPS / (timer.end - timer.start)


def per_clip_sync_loss(similarity: ScaledCosine, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """The sync loss as a Python loop over clips: the reference the vectorised loss is timed against."""
    steps = audio.shape[1]
    targets = torch.arange(steps)
    return torch.stack([F.cross_entropy(similarity(a, v), targets) for a, v in zip(audio, visual, strict=True)]).mean()


def sync_loss_milliseconds(batch: int, vectorised: bool) -> float:
    loss = SyncInfoNCE()
    audio = torch.randn(batch, STEPS, FEATURES, requires_grad=True)
    visual = torch.randn(batch, STEPS, FEATURES, requires_grad=True)
    if vectorised:
        statement = "loss(audio, visual).loss.backward()"
    else:
        statement = "per_clip_sync_loss(loss.similarity, audio, visual).backward()"
    timer = benchmark.Timer(
        statement,
        globals={"loss": loss, "audio": audio, "visual": visual, "per_clip_sync_loss": per_clip_sync_loss},
        num_threads=torch.get_num_threads(),
    )
    return timer.blocked_autorange(min_run_time=1.0).median * 1e3


def run() -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for input_name, image_size in INPUTS.items():
        for precision in PRECISIONS:
            rows.append(
                {
                    "measurement": f"SFE training step ({device}), B={BATCH} T={STEPS} {FRAMES} frames/step",
                    "input": input_name,
                    "precision": precision,
                    "value": training_steps_per_second(image_size, precision),
                    "unit": "steps/s",
                }
            )
    for batch in (BATCH, 64):
        times = {kind: sync_loss_milliseconds(batch, kind == "vectorised") for kind in ("vectorised", "per-clip loop")}
        for kind, milliseconds in times.items():
            rows.append(
                {
                    "measurement": f"sync loss forward+backward, {kind}",
                    "input": f"B={batch} T={STEPS} D={FEATURES}",
                    "precision": "32-true",
                    "value": milliseconds,
                    "unit": "ms",
                }
            )
        rows.append(
            {
                "measurement": "sync loss speed-up of the vectorised loss",
                "input": f"B={batch} T={STEPS} D={FEATURES}",
                "precision": "32-true",
                "value": times["per-clip loop"] / times["vectorised"],
                "unit": "x",
            }
        )
    return rows
