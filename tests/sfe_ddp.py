"""One SFE training step on a fixed global batch, as 2 DDP processes on the CPU (gloo) or as one process.

    python tests/sfe_ddp.py single|ddp|uneven OUT_DIR

``ddp`` splits the 8 clips 4 + 4 over the ranks, ``uneven`` 5 + 3 (a short last batch on one rank).
Writes ``OUT_DIR/rank<k>.pt`` with that rank's loss and, after DDP's gradient averaging, the gradients;
tests/test_sfe.py checks that the two modes agree. A standalone script because Lightning's DDP launcher
re-executes ``sys.argv``, which must not be pytest. Two things that would legitimately differ are pinned:
batch norm runs in eval mode (``SyncBatchNorm`` has no CPU kernel, and per-rank batch statistics differ from
whole-batch ones), and each clip's identity step is a function of the clip instead of a random draw.
"""

import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader, Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the DDP launcher runs this file as a script

from lightning_modules.sfe import SFEPretraining  # noqa: E402
from tests.sfe_data import TINY, SyntheticSFEData  # noqa: E402

CLIPS = 8  # the global batch


class FixedStepSFE(SFEPretraining):
    """The identity step of a clip is its speaker index modulo T, the same in every process layout."""

    def speaker_steps(self, batch: dict) -> torch.Tensor:
        return batch["speaker"] % batch["audio"].shape[1]


class UnevenSplit(SyntheticSFEData):
    """Rank 0 trains on the first 5 clips, rank 1 on the last 3, each as one batch."""

    def train_dataloader(self) -> DataLoader:
        clips = range(5) if self.trainer.global_rank == 0 else range(5, CLIPS)
        return DataLoader(Subset(self.train_set, clips), batch_size=CLIPS)


class RecordStep(Callback):
    """Freezes batch norm before the step; saves the loss and the synchronised gradients before the update."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.record: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for module in pl_module.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.record["grads"] = {
            name: parameter.grad.detach().clone() for name, parameter in pl_module.named_parameters()
        }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.record.update(loss=outputs["loss"].detach(), clips=batch["audio"].shape[0])
        torch.save(self.record, self.out_dir / f"rank{trainer.global_rank}.pt")


def main(mode: str, out_dir: Path) -> None:
    devices = 1 if mode == "single" else 2
    seed_everything(0)
    model = FixedStepSFE(**TINY)
    data_class = UnevenSplit if mode == "uneven" else SyntheticSFEData
    data = data_class(steps=4, batch_size=CLIPS // devices, image_size=32, train_clips=CLIPS)
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="auto" if mode == "single" else "ddp",
        use_distributed_sampler=mode != "uneven",
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RecordStep(out_dir)],
    )
    trainer.fit(model, data)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
