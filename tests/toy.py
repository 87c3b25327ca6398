"""A tiny LightningModule and DataModule that exercise the shared CLI plumbing without any MACL model."""

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset


class ToyRegression(LightningModule):
    """A linear regression y = x @ w, logging ``train/loss`` and ``val/loss`` like every stage does."""

    def __init__(self, features: int = 8, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(features, 1)

    def _loss(self, batch):
        inputs, targets = batch
        return torch.nn.functional.mse_loss(self.linear(inputs).squeeze(-1), targets)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("test/loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class ToyData(LightningDataModule):
    """Noisy linear targets from a fixed weight vector; the same seed gives the same split."""

    def __init__(self, features: int = 8, samples: int = 512, batch_size: int = 16, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.randn(samples, features, generator=generator)
        weights = torch.randn(features, generator=generator)
        targets = inputs @ weights + 0.05 * torch.randn(samples, generator=generator)
        split = samples * 3 // 4
        self.train_set = TensorDataset(inputs[:split], targets[:split])
        self.val_set = TensorDataset(inputs[split:], targets[split:])
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return self.val_dataloader()
