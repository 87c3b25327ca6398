"""Shared fixtures, built once per test session: the tiny corpus every data test starts from, tiny checkpoints."""

from pathlib import Path

import pytest

from datamodules.synthetic import generate_corpus

# The session's corpus: 4 speakers (2 of them test speakers) x 2 clips x 2 s, LRS3 layout, 256 px frames.
SESSION_CORPUS = {"layout": "lrs3", "speakers": 4, "clips": 2, "seconds": 2.0, "seed": 0, "size": 256}


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    """The root of a small generated corpus (SESSION_CORPUS) with a ``.truth.json`` sidecar per clip."""
    return generate_corpus(tmp_path_factory.mktemp("corpus") / "synthetic", **SESSION_CORPUS, progress=False)


@pytest.fixture(scope="session")
def synthetic_shards(synthetic_corpus, tmp_path_factory) -> Path:
    """The session corpus preprocessed into shards (train, val and test splits by speaker)."""
    from datamodules.preprocess import preprocess

    shards = tmp_path_factory.mktemp("shards") / "synthetic"
    preprocess(synthetic_corpus, "lrs3", shards, workers=2, progress=False)
    return shards


@pytest.fixture(scope="session")
def embedded_shards(tmp_path_factory) -> Path:
    """The embedded default corpus (what `make data` builds: 8 speakers x 6 clips x 4 s) as shards."""
    from datamodules.preprocess import preprocess
    from datamodules.synthetic import ensure_default_corpus

    root = tmp_path_factory.mktemp("embedded")
    shards = root / "shards"
    preprocess(ensure_default_corpus(root / "corpus"), "lrs3", shards, workers=2, progress=False)
    return shards


def _save_checkpoint(model, path: Path) -> Path:
    """Writes ``model``'s checkpoint as a Trainer does (hooks included, so the stage is stamped)."""
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.strategy.connect(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """Run folders ``<stage>/checkpoints/last.ckpt`` of a tiny MDN (outputs near the canonical face: small
    statistics) and a tiny renderer, both at random initialisation, written by the real LightningModules."""
    import numpy as np
    import torch

    from datamodules.face import CANONICAL_FACE
    from lightning_modules.mdn import LandmarkMDN
    from lightning_modules.renderer import FaceRenderer
    from tests.mdn_data import TINY_SFE

    torch.manual_seed(0)
    statistics = {
        "registered": {"mean": CANONICAL_FACE.tolist(), "std": np.full((68, 3), 0.01).tolist()},
        "relative_pose": {"mean": [0.0] * 6, "std": [0.01] * 6},
    }
    root = tmp_path_factory.mktemp("runs")
    mdn = LandmarkMDN(sfe_hparams=TINY_SFE, statistics=statistics, reference_dim=8, hidden_dim=32)
    _save_checkpoint(mdn, root / "mdn" / "checkpoints" / "last.ckpt")
    _save_checkpoint(FaceRenderer(width=8), root / "renderer" / "checkpoints" / "last.ckpt")
    return {"mdn": root / "mdn", "renderer": root / "renderer"}
