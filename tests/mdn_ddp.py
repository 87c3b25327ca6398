"""One MDN training step on a fixed global batch, as 2 DDP processes on the CPU (gloo) or as one process.

    python tests/mdn_ddp.py single|ddp OUT_DIR

``ddp`` splits the 8 clips 4 + 4 over the ranks. Writes ``OUT_DIR/rank<k>.pt`` with that rank's loss and,
after DDP's gradient averaging, the gradients; tests/test_mdn.py checks that the two modes agree. A standalone
script because Lightning's DDP launcher re-executes ``sys.argv``. Batch norm runs in eval mode and dropout is
0: per-rank batch statistics and per-rank dropout masks would legitimately differ from one process's.
"""

import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the DDP launcher runs this file as a script

from lightning_modules.mdn import LandmarkMDN  # noqa: E402
from tests.mdn_data import TINY_SFE, SyntheticLandmarkData  # noqa: E402

CLIPS = 8  # the global batch


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
            name: parameter.grad.detach().clone()
            for name, parameter in pl_module.named_parameters()
            if parameter.grad is not None
        }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.record.update(loss=outputs["loss"].detach(), clips=batch["audio"].shape[0])
        torch.save(self.record, self.out_dir / f"rank{trainer.global_rank}.pt")


def main(mode: str, out_dir: Path) -> None:
    devices = 1 if mode == "single" else 2
    seed_everything(0)
    data = SyntheticLandmarkData(frames=8, batch_size=CLIPS // devices, train_clips=CLIPS)
    model = LandmarkMDN(sfe_hparams=TINY_SFE, statistics=data.statistics, mode="all", dropout=0.0, hidden_dim=32)
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="auto" if mode == "single" else "ddp",
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
