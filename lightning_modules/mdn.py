"""Stage 2: a Mixture Density Network from SFE speech features to registered landmarks and relative head pose.

A batch (the stage-2 data contract, ``LandmarkBatch``) holds per-frame mel windows ``audio [B, T, 20, 80]``,
the true ``registered [B, T, 68, 3]`` landmarks and relative ``pose [B, T, 6]``, the clip's ``reference
[B, 68, 3]`` (most closed mouth), ``mask [B, T]`` and ``speaker [B]``. The model predicts x, y of the 68
registered points and the 6 relative pose values of every frame (normalised with the train split's
``statistics``); depth z is not predicted (MediaPipe's z is its least reliable coordinate and the published
model regresses 68 x 2): it is carried over from the reference.
"""

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningModule
from torchmetrics import MetricCollection

from lightning_modules.checkpoints import read_stage_checkpoint, stamp_stage
from lightning_modules.mdn_decoding import clip_logits, close_lips, crossfaded, decode, deepen_dips, gaussian_smooth
from lightning_modules.mdn_inputs import POSE_DIM, build_sfe, statistics_tensors
from lightning_modules.mdn_loss import MixtureNLL, landmark_weights
from lightning_modules.metrics import (
    MOUTH,
    BestOfKDistance,
    LandmarkDistance,
    LandmarkVelocityDistance,
    MouthOpeningCorrelation,
    SampleDiversity,
    mouth_opening,
)
from lightning_modules.nets.mdn import MixtureDensityHead, phase_features

STAGE = "mdn"
MIXTURE_KEYS = ("means", "sigmas", "logits")  # the mixture itself; the closure head's logits ride beside it
EXPECTED = "an MDN checkpoint (written by lightning_modules.mdn.LandmarkMDN)"


def closure_loss(logits: torch.Tensor, closed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of closure ``logits [B, T]`` against ``closed [B, T]`` (0/1) over frames with ``mask``
    1, each class weighted by the other's share so that the rarer one (a short p, b, m) counts as much."""
    valid = mask.float()
    share = ((closed * valid).sum() / valid.sum().clamp_min(1)).clamp(0.05, 0.95)
    weights = valid * torch.where(closed > 0.5, 0.5 / share, 0.5 / (1 - share))
    losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, closed, reduction="none")
    return (losses * weights).sum() / valid.sum().clamp_min(1)


def viseme_loss(logits: torch.Tensor, visemes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of viseme ``logits [B, T, V]`` against ``visemes [B, T]`` over frames with ``mask`` 1 and a
    known viseme (not -1); 0 when there is none (a real corpus has no such truth)."""
    known = (visemes >= 0) & (mask > 0)
    if not known.any():
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits[known], visemes[known])


def motion_metrics() -> MetricCollection:
    return MetricCollection(
        {
            "lmd_mouth": LandmarkDistance(MOUTH),
            "lmd_face": LandmarkDistance(),
            "lvd": LandmarkVelocityDistance(),
            "mouth_corr": MouthOpeningCorrelation(),
        }
    )


class LandmarkMDN(LightningModule):
    """Audio branch (from an SFE checkpoint) + reference encoder + mixture density head, trained by NLL.

    ``mode``: ``last`` trains the head only (the SFE frozen and kept in eval mode), ``ft`` fine-tunes the SFE
    at lr / 10, ``all`` trains everything at lr. ``sfe_checkpoint: null`` initialises the SFE at random (the
    no-pretraining ablation) from ``sfe_hparams``; the SFE settings are saved in this model's hyperparameters,
    so an MDN checkpoint reloads without the SFE file. ``components`` M (1 is plain regression).
    ``mixture_scope``: ``frame`` (published) makes every frame its own mixture; ``clip`` makes the weights the
    clip's (the mean of its frames' logits) and scores each component on the whole track (``MixtureNLL``), so
    that the M components are M alternative tracks and a sample keeps one of them.
    ``reference_noise``: in training, Gaussian noise of this std is added to the normalised reference that the
    reference encoder sees (not to the offset the means start from), so that a corpus of few people does not
    teach it a lookup of their faces that fails on a new one. The BiGRU runs
    on the SFE's ``step_stride`` interleaved frame phases (``phase_features``). Validation and test log the
    metrics of ``max`` decoding beside the static baseline (``static/``: the reference held still) and the
    model given time-shuffled audio (``shuffled/``), plus best-of-K and diversity of ``eval_samples`` samples,
    drawn at ``sample_temperature`` (``mdn_decoding.decode``).
    ``closure_weight`` > 0 (not in the published model, where it is 0) adds a head that predicts whether each
    frame's lips are together (the batch's ``lips_closed``), trained by binary cross-entropy at this weight;
    decoding then closes the lips where it is sure (``mdn_decoding.close_lips``) and where the decoded mouth dips
    between two openings (``mdn_decoding.deepen_dips``), so that a p, b or m of one or two frames is not averaged
    away by the mixture and the smoothing. ``viseme_weight`` > 0 (not published) adds an auxiliary head over
    ``viseme_classes`` visemes, trained by cross-entropy at this weight against the batch's ``visemes`` where the
    corpus knows them, so the hidden layer must tell a p from a t whatever the voice.
    """

    def __init__(
        self,
        sfe_checkpoint: str | None = None,
        sfe_hparams: dict | None = None,
        mode: Literal["last", "ft", "all"] = "ft",
        components: int = 3,
        mixture_scope: Literal["frame", "clip"] = "frame",
        reference_dim: int = 64,
        hidden_dim: int = 320,
        dropout: float = 0.2,
        reference_noise: float = 0.0,
        sigma_min: float = 0.01,
        sigma_max: float = 10.0,
        lip_weight: float = 3.0,
        closed_weight: float = 1.0,
        closed_opening: float = 0.05,
        closure_weight: float = 0.0,
        viseme_weight: float = 0.0,
        viseme_classes: int = 18,
        dirichlet_alpha: float = 2.0,
        dirichlet_weight: float = 0.005,
        lr: float = 1e-4,
        head_weight_decay: float = 1e-4,
        statistics: dict | None = None,
        smoothing: float = 1.0,
        eval_samples: int = 5,
        sample_correlation_frames: float = 4.0,
        sample_temperature: float = 0.1,
        chunk_frames: int = 256,
    ):
        super().__init__()
        self.save_hyperparameters()
        if mode not in ("last", "ft", "all"):
            raise ValueError(f"model.init_args.mode must be last, ft or all, not {mode!r}.")
        self.sfe, self.hparams.sfe_hparams = build_sfe(sfe_checkpoint, sfe_hparams)
        if mode == "last":
            self.sfe.requires_grad_(False)
        self.head = MixtureDensityHead(
            feature_dim=self.hparams.sfe_hparams["feature_dim"],
            pose_dim=POSE_DIM,
            reference_dim=reference_dim,
            hidden_dim=hidden_dim,
            components=components,
            dropout=dropout,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            closure=closure_weight > 0,
            visemes=viseme_classes if viseme_weight > 0 else 0,
        )
        self.mixture_nll = MixtureNLL(dirichlet_alpha, dirichlet_weight, mixture_scope)
        for name, value in statistics_tensors(statistics).items():
            self.register_buffer(name, value, persistent=False)
        self.metrics = motion_metrics()
        self.static_metrics = motion_metrics()
        self.shuffled_metrics = motion_metrics()
        self.best_of_k = BestOfKDistance(MOUTH)
        self.diversity = SampleDiversity()

    def train(self, mode: bool = True) -> "LandmarkMDN":
        super().train(mode)
        if self.hparams.mode == "last":
            self.sfe.eval()  # frozen: its batch-norm statistics must not drift
        return self

    def normalise(self, registered: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """Registered ``[..., 68, 3]`` (and relative pose ``[..., 6]``) -> normalised vector ``[..., 136 (+ 6)]``."""
        points = ((registered[..., :2] - self.landmark_mean[:, :2]) / self.landmark_std[:, :2]).flatten(-2)
        if pose is None:
            return points
        return torch.cat([points, (pose - self.pose_mean) / self.pose_std], dim=-1)

    def denormalise(self, vectors: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[..., T, 142]`` and the reference ``[..., 68, 3]`` -> registered ``[..., T, 68, 3]`` (z of the
        reference) and relative pose ``[..., T, 6]``."""
        points = vectors[..., :136].unflatten(-1, (68, 2)) * self.landmark_std[:, :2] + self.landmark_mean[:, :2]
        depth = reference[..., None, :, 2:].expand(*points.shape[:-1], 1)
        pose = vectors[..., 136:] * self.pose_std + self.pose_mean
        return torch.cat([points, depth], dim=-1), pose

    def forward(
        self, audio: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``audio [B, T, 20, 80]``, ``reference [B, 68, 3]`` -> mixture ``means [B, T, M, 142]``, ``sigmas``,
        ``logits [B, T, M]`` in normalised units; with the ``clip`` scope the logits are pooled over the frames
        with ``mask [B, T]`` 1 (all when None)."""
        features = phase_features(self.sfe, audio, self.hparams.sfe_hparams["step_stride"])
        reference = self.normalise(reference)  # [B, 136]
        encoder_reference = reference
        if self.training and self.hparams.reference_noise > 0:
            encoder_reference = reference + self.hparams.reference_noise * torch.randn_like(reference)
        mixture = self.head(features["content"], features["speaker"], reference, encoder_reference)
        if self.hparams.mixture_scope == "clip":
            mixture["logits"] = clip_logits(mixture["logits"], mask)
        return mixture

    def tracks(
        self,
        mixture: dict,
        reference: torch.Tensor,
        mode: str,
        samples: int = 1,
        seed: int = 0,
        smoothing: float | None = None,
        temperature: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded, smoothed, denormalised tracks: registered ``[K, B, T, 68, 3]`` and pose ``[K, B, T, 6]``;
        ``smoothing`` and ``temperature`` default to the model's."""
        generator = torch.Generator().manual_seed(seed)
        temperature = self.hparams.sample_temperature if temperature is None else temperature
        components = {name: mixture[name] for name in MIXTURE_KEYS}
        vectors = decode(**components, mode=mode, samples=samples, generator=generator,
                         correlation_frames=self.hparams.sample_correlation_frames,
                         temperature=temperature)  # fmt: skip
        smoothed = gaussian_smooth(vectors, self.hparams.smoothing if smoothing is None else smoothing)
        registered, pose = self.denormalise(smoothed, reference[None])
        if "closure_logits" in mixture:  # dips measured before the smoothing, which fills a short closure in
            probability = mixture["closure_logits"].sigmoid()
            unsmoothed = self.denormalise(vectors, reference[None])[0]
            registered = deepen_dips(close_lips(registered, probability), close_lips(unsmoothed, probability))
        return registered, pose

    @torch.no_grad()
    def generate(
        self,
        audio: torch.Tensor,
        reference: torch.Tensor,
        mode: str = "max",
        samples: int = 1,
        seed: int = 0,
        smoothing: float | None = None,
        temperature: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """``audio [1, T, 20, 80]`` and registered ``reference [68, 3]`` -> ``registered [K, T, 68, 3]`` and
        relative ``pose [K, T, 6]`` (K = ``samples`` for ``sample``, else 1), smoothed over ``smoothing``
        frames, samples drawn at ``temperature`` (the model's defaults when None). Runs in eval mode on the
        model's device, chunked for long T."""
        was_training = self.training
        self.eval()
        audio, reference = audio.to(self.device, torch.float32), reference.to(self.device, torch.float32)
        mixture = crossfaded(lambda part: self(part, reference[None]), audio, self.hparams.chunk_frames)
        if self.hparams.mixture_scope == "clip":  # one component for the whole track, not one per chunk
            mixture["logits"] = clip_logits(mixture["logits"])
        registered, pose = self.tracks(mixture, reference[None], mode, samples if mode == "sample" else 1, seed,
                                       smoothing, temperature)  # fmt: skip
        self.train(was_training)
        return {"registered": registered[:, 0], "pose": pose[:, 0]}

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        mixture = self(batch["audio"], batch["reference"], batch["mask"])
        target = self.normalise(batch["registered"], batch["pose"])
        opening = mouth_opening(batch["registered"])
        weights = landmark_weights(opening, POSE_DIM, self.hparams.lip_weight, self.hparams.closed_weight,
                                   self.hparams.closed_opening)  # fmt: skip
        components = {name: mixture[name] for name in MIXTURE_KEYS}
        loss = self.mixture_nll(**components, target=target, weights=weights, mask=batch["mask"])
        batch_size = batch["audio"].shape[0]
        mixture_weights = mixture["logits"].detach().softmax(-1)  # [B, T, M]
        valid = batch["mask"][..., None]
        logged = {"loss": loss.loss, "nll": loss.nll, "dirichlet": loss.prior}
        total = loss.loss
        if "closure_logits" in mixture:
            logged["closure_bce"] = closure_loss(mixture["closure_logits"], batch["lips_closed"], batch["mask"])
            total = total + self.hparams.closure_weight * logged["closure_bce"]
            logged["loss"] = total
        if "viseme_logits" in mixture:
            logged["viseme_ce"] = viseme_loss(mixture["viseme_logits"], batch["visemes"], batch["mask"])
            total = total + self.hparams.viseme_weight * logged["viseme_ce"]
            logged["loss"] = total
        for component in range(self.hparams.components):
            logged[f"weight_{component}"] = (mixture_weights[..., component, None] * valid).sum() / valid.sum()
        entropy = torch.special.entr(mixture_weights).sum(-1, keepdim=True)  # [B, T, 1]
        logged["weight_entropy"] = (entropy * valid).sum() / valid.sum()  # ln M: the weights tell nothing
        self.log_dict({f"{stage}/{name}": value.detach() for name, value in logged.items()},
                      batch_size=batch_size, sync_dist=stage != "train", prog_bar=False)  # fmt: skip
        if stage != "train":
            self._evaluate(batch, mixture, stage)
        return total

    def _evaluate(self, batch: dict, mixture: dict, stage: str) -> None:
        """Metrics of max decoding, the static baseline, time-shuffled audio, best-of-K and diversity."""
        true, mask, reference = batch["registered"], batch["mask"], batch["reference"]
        predicted = self.tracks(mixture, reference, "max")[0][0]
        self.metrics.update(predicted, true, mask)
        self.static_metrics.update(reference[:, None].expand_as(true), true, mask)
        frames = batch["audio"].shape[1]
        order = torch.randperm(frames, generator=torch.Generator().manual_seed(self.global_step)).to(self.device)
        shuffled = self.tracks(self(batch["audio"][:, order], reference, mask), reference, "max")[0][0]
        self.shuffled_metrics.update(shuffled, true, mask)
        samples = self.tracks(mixture, reference, "sample", self.hparams.eval_samples)[0]
        self.best_of_k.update(samples, true, mask)
        self.diversity.update(samples, mask)
        logged = {
            **{f"{stage}/{name}": metric for name, metric in self.metrics.items()},
            **{f"{stage}/static/{name}": metric for name, metric in self.static_metrics.items()},
            **{f"{stage}/shuffled/{name}": metric for name, metric in self.shuffled_metrics.items()},
            f"{stage}/best_of_k_lmd_mouth": self.best_of_k,
            f"{stage}/diversity": self.diversity,
        }
        self.log_dict(logged, batch_size=batch["audio"].shape[0])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam; the head's weight matrices carry a small L2 (``head_weight_decay``); the SFE trains at lr / 10
        (``ft``), at lr (``all``) or not at all (``last``)."""
        lr = self.hparams.lr
        head_weights = [p for name, p in self.head.named_parameters() if name.endswith("weight")]
        head_biases = [p for name, p in self.head.named_parameters() if not name.endswith("weight")]
        groups = [
            {"params": head_weights, "weight_decay": self.hparams.head_weight_decay},
            {"params": head_biases, "weight_decay": 0.0},
        ]
        if self.hparams.mode != "last":
            groups.append({"params": list(self.sfe.parameters()), "lr": lr / 10 if self.hparams.mode == "ft" else lr})
        return torch.optim.Adam(groups, lr=lr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stamp_stage(checkpoint, STAGE, type(self))


def load_landmark_mdn(path: str | Path) -> LandmarkMDN:
    """An MDN checkpoint -> the model in eval mode on the CPU, without the SFE checkpoint it was trained from.

    A missing, unreadable or other-stage file raises ``CheckpointError`` with one sentence."""
    checkpoint = read_stage_checkpoint(path, STAGE, EXPECTED)
    hparams = checkpoint.get("hyper_parameters") or {}
    hparams = {name: value for name, value in hparams.items() if not name.startswith("_")}
    model = LandmarkMDN(**{**hparams, "sfe_checkpoint": None})
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
