"""A model's settings that the shards fix (mel bins, audio window, frames per step), checked before training."""

from lightning.pytorch import LightningDataModule, LightningModule

from datamodules.audio import MELS_PER_FRAME, WINDOW_MELS
from datamodules.shards import read_index
from experiments.cli.errors import RunError


def check_model_against_shards(model: LightningModule, datamodule: LightningDataModule | None) -> None:
    """Refuses a model whose ``mel_bins``, ``window_frames`` (the 200 ms audio window in mel frames) or
    ``frames_per_step`` differ from what the DataModule's shards give (their ``index.json``, and the DataModule's
    ``frames_per_step``); models and DataModules without these settings pass."""
    shards = getattr(datamodule, "shards", None)
    if shards is None:
        return
    index = read_index(shards)
    given = {
        "mel_bins": index["mel_bins"],
        "window_frames": WINDOW_MELS // MELS_PER_FRAME * index["mels_per_frame"],
        "frames_per_step": getattr(datamodule, "frames_per_step", None),
    }
    wrong = [
        f"model {name} is {model.hparams[name]} but the shards give {value}"
        for name, value in given.items()
        if value is not None and name in model.hparams and model.hparams[name] != value
    ]
    if wrong:
        raise RunError(
            f"The model does not fit the shards of {shards}/index.json: {', '.join(wrong)}; set the model to the "
            f"shards' values (or preprocess the corpus again with the new ones)."
        )
