"""What stage 2 takes from outside: the SFE audio branch of a stage-1 checkpoint, and the data statistics."""

import inspect

import torch

from lightning_modules.checkpoints import CheckpointError, read_stage_checkpoint
from lightning_modules.nets.sfe import SpeechFeatureExtractor
from lightning_modules.sfe import load_speech_feature_extractor

POSE_DIM = 6
SFE_DEFAULTS = {
    name: parameter.default for name, parameter in inspect.signature(SpeechFeatureExtractor).parameters.items()
}
DEFAULT_STEP_STRIDE = 3


def _load_sfe(path: str) -> tuple[SpeechFeatureExtractor, dict]:
    """ADAPTER until the SFE hand-off (``SFEHandoff(net, hparams)``) lands: the net and its checkpoint's hparams."""
    net = load_speech_feature_extractor(path)
    return net, read_stage_checkpoint(path, "sfe", "an SFE checkpoint")["hyper_parameters"]


def build_sfe(checkpoint: str | None, settings: dict | None) -> tuple[SpeechFeatureExtractor, dict]:
    """The SFE audio branch and its settings (constructor arguments and ``step_stride``).

    From ``checkpoint`` when given (``settings``, if any, must agree with it); else randomly initialised from
    ``settings`` (the no-pretraining ablation, or a reload whose weights come from the MDN checkpoint).
    """
    settings = dict(settings or {})
    unknown = sorted(settings.keys() - {*SFE_DEFAULTS, "step_stride"})
    if unknown:
        raise ValueError(f"model.init_args.sfe_hparams has unknown keys {', '.join(unknown)}.")
    if checkpoint is None:
        found = {**SFE_DEFAULTS, "step_stride": DEFAULT_STEP_STRIDE, **settings}
        return SpeechFeatureExtractor(**{name: found[name] for name in SFE_DEFAULTS}), found
    net, hparams = _load_sfe(checkpoint)
    found = {name: hparams[name] for name in SFE_DEFAULTS}
    found["step_stride"] = hparams.get("step_stride", DEFAULT_STEP_STRIDE)
    differing = sorted(name for name, value in settings.items() if found[name] != value)
    if differing:
        expected = ", ".join(f"{name} {settings[name]}" for name in differing)
        actual = ", ".join(f"{name} {found[name]}" for name in differing)
        raise CheckpointError(
            f"Checkpoint {checkpoint} does not fit model.init_args.sfe_hparams: expected {expected}, found {actual}."
        )
    return net, found


def statistics_tensors(statistics: dict | None) -> dict[str, torch.Tensor]:
    """Mean and std of registered landmarks ``[68, 3]`` and relative pose ``[6]`` (identity when None).

    Stds are floored at 1e-3 so that a coordinate that never moves in the train split cannot blow up."""
    if statistics is None:
        return {
            "landmark_mean": torch.zeros(68, 3),
            "landmark_std": torch.ones(68, 3),
            "pose_mean": torch.zeros(POSE_DIM),
            "pose_std": torch.ones(POSE_DIM),
        }
    try:
        tensors = {
            "landmark_mean": torch.tensor(statistics["registered"]["mean"], dtype=torch.float32).view(68, 3),
            "landmark_std": torch.tensor(statistics["registered"]["std"], dtype=torch.float32).view(68, 3),
            "pose_mean": torch.tensor(statistics["relative_pose"]["mean"], dtype=torch.float32).view(POSE_DIM),
            "pose_std": torch.tensor(statistics["relative_pose"]["std"], dtype=torch.float32).view(POSE_DIM),
        }
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            "model.init_args.statistics must be index.json's statistics: registered mean/std [68][3] and "
            f"relative_pose mean/std [6] ({type(error).__name__}: {error})."
        ) from error
    tensors["landmark_std"] = tensors["landmark_std"].clamp_min(1e-3)
    tensors["pose_std"] = tensors["pose_std"].clamp_min(1e-3)
    return tensors
