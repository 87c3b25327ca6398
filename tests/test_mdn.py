"""Stage 2 (lightning_modules/mdn.py and its parts): loss, phases, decoding, checkpoints, training, DDP, bf16."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything
from scipy.stats import norm

from datamodules.mdn import LandmarkDataModule
from datamodules.media import read_video
from experiments.mdn_figures import figures, held_out_voice_speakers, masked_batches, speaker_groups
from experiments.mdn_figures import main as mdn_figures_main
from lightning_modules.checkpoints import CheckpointError, stamp_stage
from lightning_modules.mdn import LandmarkMDN, load_landmark_mdn
from lightning_modules.mdn_decoding import crossfaded, decode, gaussian_smooth
from lightning_modules.mdn_live import LiveLandmarks
from lightning_modules.mdn_loss import MixtureNLL, landmark_weights
from lightning_modules.metrics import MouthOpeningCorrelation, SampleDiversity
from lightning_modules.nets.mdn import phase_features
from lightning_modules.nets.sfe import SpeechFeatureExtractor
from lightning_modules.sfe import SFEPretraining
from tests.mdn_data import TINY_SFE, SyntheticLandmarkClips, SyntheticLandmarkData, clip_statistics
from tests.sfe_data import TINY
from tests.trainer import fast_fit, quiet_trainer

ROOT = Path(__file__).resolve().parents[1]
SMALL_HEAD = dict(hidden_dim=32, reference_dim=8)


def fixed_batch(clips: int = 4, frames: int = 12) -> dict:
    dataset = SyntheticLandmarkClips(clips, frames, seed=7)
    return torch.utils.data.default_collate([dataset[index] for index in range(clips)])


def save_checkpoint(model, path: Path, stage: str) -> Path:
    """What Lightning writes, as far as the loaders read it: state_dict, hyper_parameters, the stage stamp."""
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    stamp_stage(checkpoint, stage, type(model))
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def sfe_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(SFEPretraining(**TINY), tmp_path_factory.mktemp("sfe") / "sfe.ckpt", "sfe")


# The loss


def test_mixture_nll_matches_a_direct_computation_of_a_known_mixture():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(2, 3, 2, 5, generator=generator)  # B=2, T=3, M=2, D=5
    sigmas = torch.rand(2, 3, 2, generator=generator) + 0.5
    logits = torch.randn(2, 3, 2, generator=generator)
    target = torch.randn(2, 3, 5, generator=generator)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    loss = MixtureNLL(dirichlet_alpha=2.0, dirichlet_weight=0.1)(
        means, sigmas, logits, target, torch.ones(2, 3, 5), mask
    )

    weights = logits.softmax(-1).numpy()
    expected_nll, expected_prior = [], []
    for b, t in zip(*np.nonzero(mask.numpy()), strict=True):
        density = sum(
            weights[b, t, m] * np.prod(norm.pdf(target[b, t].numpy(), means[b, t, m].numpy(), sigmas[b, t, m].item()))
            for m in range(2)
        )
        expected_nll.append(-np.log(density) / 5)
        expected_prior.append(-np.log(weights[b, t]).sum())
    assert loss.nll.item() == pytest.approx(np.mean(expected_nll), rel=1e-5)
    assert loss.prior.item() == pytest.approx(np.mean(expected_prior), rel=1e-5)
    assert loss.loss.item() == pytest.approx(np.mean(expected_nll) + 0.1 * np.mean(expected_prior), rel=1e-5)


def test_clip_scope_scores_each_component_on_the_whole_track():
    """One component explains a clip's every valid frame: logsumexp over components of the summed log densities,
    with the weights of the clip; the prior is counted once per clip, in the same per-dimension units."""
    generator = torch.Generator().manual_seed(1)
    means = torch.randn(2, 3, 2, 5, generator=generator)  # B=2, T=3, M=2, D=5
    sigmas = torch.rand(2, 3, 2, generator=generator) + 0.5
    logits = torch.randn(2, 1, 2, generator=generator).expand(2, 3, 2)
    target = torch.randn(2, 3, 5, generator=generator)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    loss = MixtureNLL(dirichlet_alpha=2.0, dirichlet_weight=0.1, scope="clip")(
        means, sigmas, logits, target, torch.ones(2, 3, 5), mask
    )

    weights = logits[:, 0].softmax(-1).numpy()
    log_likelihoods, log_priors = [], []
    for b in range(2):
        frames = np.nonzero(mask[b].numpy())[0]
        density = sum(
            weights[b, m]
            * np.prod([norm.pdf(target[b, t].numpy(), means[b, t, m].numpy(), sigmas[b, t, m].item()) for t in frames])
            for m in range(2)
        )
        log_likelihoods.append(np.log(density))
        log_priors.append(np.log(weights[b]).sum())
    dimensions = mask.sum().item() * 5
    assert loss.nll.item() == pytest.approx(-np.sum(log_likelihoods) / dimensions, rel=1e-5)
    assert loss.prior.item() == pytest.approx(-np.sum(log_priors) / dimensions, rel=1e-5)
    with pytest.raises(ValueError, match="scope must be one of frame, clip"):
        MixtureNLL(scope="window")


def test_lips_weigh_more_and_most_when_the_mouth_is_closed():
    weights = landmark_weights(torch.tensor([[0.0, 0.025, 0.2]]), 6, lip_weight=3.0, closed_weight=1.0,
                               closed_opening=0.05)  # fmt: skip
    points = weights[0, :, :136].view(3, 68, 2)
    assert weights.shape == (1, 3, 142) and (weights[0, :, 136:] == 1).all()
    assert (points[:, :48] == 1).all()
    torch.testing.assert_close(points[:, 48:, 0].mean(-1), torch.tensor([6.0, 4.5, 3.0]))


def test_the_dirichlet_prior_keeps_an_unused_component_alive():
    """A component that explains nothing still keeps a weight well above 0.05 at the optimum of the loss."""
    logits = torch.zeros(3, requires_grad=True)
    means = torch.tensor([0.0, 50.0, -50.0]).view(1, 1, 3, 1).expand(1, 1, 3, 136)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    loss_fn = MixtureNLL()
    for _ in range(1000):
        optimizer.zero_grad()
        loss = loss_fn(means, torch.ones(1, 1, 3), logits.view(1, 1, 3), torch.zeros(1, 1, 136), torch.ones(1, 1, 136),
                       torch.ones(1, 1))  # fmt: skip
        loss.loss.backward()
        optimizer.step()
    weights = logits.softmax(0)
    assert weights[0] > 0.5 and (weights[1:] > 0.05).all(), weights


# The audio branch on interleaved phases


def test_phase_features_run_the_bigru_on_each_stride_phase_and_interleave_back():
    sfe = SpeechFeatureExtractor(**TINY_SFE).eval()
    audio = torch.rand(2, 10, 20, 80)
    with torch.no_grad():
        features = phase_features(sfe, audio, stride=3)
        for phase in range(3):
            expected = sfe(audio[:, phase::3])
            for name in ("content", "speaker", "content_addressing"):
                torch.testing.assert_close(features[name][:, phase::3], expected[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(phase_features(sfe, audio, stride=1)["content"], sfe(audio)["content"])
        assert phase_features(sfe, audio[:, :2], stride=3)["content"].shape == (2, 2, 16)


# Decoding


def test_max_mean_and_sample_decoding():
    means = torch.zeros(1, 4, 2, 3)
    means[..., 1, :] = 10.0
    logits = torch.log(torch.tensor([0.75, 0.25])).expand(1, 4, 2)
    sigmas = torch.full((1, 4, 2), 1e-4)
    assert (decode(means, sigmas, logits, "max") == 0).all()
    torch.testing.assert_close(decode(means, sigmas, logits, "mean"), torch.full((1, 1, 4, 3), 2.5))
    samples = decode(means, sigmas, logits, "sample", samples=400, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (400, 1, 4, 3)
    first = samples[:, 0, 0, 0].round()
    assert (samples.round() == first[:, None, None, None]).all(), "a sampled track switched component"
    assert 0.65 < (first == 0).float().mean() < 0.85
    with pytest.raises(ValueError, match="mode must be one of max, mean, sample"):
        decode(means, sigmas, logits, "median")


def test_a_sampled_track_is_smooth_in_time_not_independent_noise_per_frame():
    frames, dim = 200, 50
    means, sigmas, logits = torch.zeros(1, frames, 1, dim), torch.ones(1, frames, 1), torch.zeros(1, frames, 1)
    samples = decode(means, sigmas, logits, "sample", samples=8, generator=torch.Generator().manual_seed(0))
    assert samples.std().item() == pytest.approx(1.0, abs=0.1), "sample noise should keep the component's sigma"
    step = samples.diff(dim=2).pow(2).mean().item()  # independent N(0, 1) noise per frame gives 2
    assert step < 0.1, f"mean squared frame-to-frame change {step:.3f}"
    other = decode(means, sigmas, logits, "sample", samples=8, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(samples, other)
    cooler = decode(means, sigmas, logits, "sample", samples=8, generator=torch.Generator().manual_seed(0),
                    temperature=0.25)  # fmt: skip
    torch.testing.assert_close(cooler, 0.25 * samples)


def test_gaussian_smoothing_keeps_constants_and_damps_jitter():
    constant = torch.full((2, 30, 4), 3.0)
    torch.testing.assert_close(gaussian_smooth(constant, 2.0), constant)
    jitter = torch.tensor([1.0, -1.0]).repeat(15)[None, :, None]
    assert gaussian_smooth(jitter, 2.0)[:, 5:-5].abs().max() < 0.05
    assert gaussian_smooth(jitter, 0.0) is jitter


def test_crossfaded_windows_equal_one_pass_for_a_per_frame_function():
    audio = torch.randn(1, 700, 3)

    def per_frame(part):
        return {"means": part * 2, "logits": part.sum(-1)}

    chunked = crossfaded(per_frame, audio, chunk=128)
    torch.testing.assert_close(chunked["means"], audio * 2)
    torch.testing.assert_close(chunked["logits"], audio.sum(-1))


# The model: shapes, modes, checkpoints


def small_model(**kwargs) -> LandmarkMDN:
    statistics = clip_statistics(SyntheticLandmarkClips(8, 12))
    return LandmarkMDN(**{"sfe_hparams": TINY_SFE, "statistics": statistics, **SMALL_HEAD, **kwargs})


@pytest.mark.parametrize(("mode", "samples", "expected"), [("max", 4, 1), ("mean", 1, 1), ("sample", 4, 4)])
def test_generate_returns_denormalised_tracks_of_any_length(mode, samples, expected):
    model = small_model(chunk_frames=32).eval()
    reference = fixed_batch()["reference"][0]
    for frames in (1, 5, 100):
        result = model.generate(torch.rand(1, frames, 20, 80), reference, mode=mode, samples=samples, seed=3)
        assert result["registered"].shape == (expected, frames, 68, 3)
        assert result["pose"].shape == (expected, frames, 6)
        torch.testing.assert_close(result["registered"][..., 2], reference[:, 2].expand(expected, frames, 68))
        assert (result["registered"][..., :2] - reference[:, :2]).abs().mean() < 1.0, "not in inter-ocular units"
    again = model.generate(torch.ones(1, 9, 20, 80), reference, mode=mode, samples=samples, seed=3)
    torch.testing.assert_close(again, model.generate(torch.ones(1, 9, 20, 80), reference, mode=mode,
                                                     samples=samples, seed=3))  # fmt: skip


class SpeechDrivenLogits(torch.nn.Module):
    """A mixture head whose logits follow the speech features strongly: component 0 for one sound, 2 for another."""

    def __init__(self, head: torch.nn.Module, loud: torch.Tensor, quiet: torch.Tensor):
        super().__init__()
        self.head, self.direction, self.midpoint = head, loud - quiet, (loud + quiet) / 2

    def forward(self, content: torch.Tensor, *args, **kwargs) -> dict[str, torch.Tensor]:
        mixture = self.head(content, *args, **kwargs)
        score = (content - self.midpoint) @ self.direction / self.direction.square().sum()  # [B, T], +-0.5
        drive = 20 * score[..., None] * torch.tensor([1.0, 0.0, -1.0])
        return {**mixture, "logits": mixture["logits"] + drive}


WINDOWS = (slice(0, 16), slice(24, 40))  # the first and last of the 16-frame windows that cover 40 frames


def test_clip_scope_keeps_one_component_for_a_whole_generated_track():
    """With ``mixture_scope: clip`` the weights are the clip's, equal on every frame and, in ``generate``, over
    the cross-faded windows of a long track too, so ``max`` follows one component from the first frame to the last."""
    torch.manual_seed(0)
    model = small_model(mixture_scope="clip", chunk_frames=16, smoothing=0.0).eval()
    reference, audio = fixed_batch()["reference"][0], torch.rand(1, 40, 20, 80)
    audio[:, 24:] = 0  # speech, then silence
    with torch.no_grad():
        first, last = (phase_features(model.sfe, audio[:, part], 3)["content"][0].mean(0) for part in WINDOWS)
        model.head = SpeechDrivenLogits(model.head, first, last)
        pooled = model(audio[:, :16], reference[None], mask=torch.ones(1, 16))["logits"]
        per_window = crossfaded(lambda part: model(part, reference[None]), audio, 16)
    torch.testing.assert_close(pooled, pooled[:, :1].expand_as(pooled))
    assert per_window["logits"][0, 0].argmax() == 0 and per_window["logits"][0, -1].argmax() == 2
    chosen = per_window["logits"].mean(1).argmax(-1).item()
    track = model.generate(audio, reference, mode="max")["registered"][0]  # [T, 68, 3]
    component = model.denormalise(per_window["means"][:, :, chosen], reference[None])[0][0]
    torch.testing.assert_close(track, component, atol=1e-5, rtol=1e-5)


# Live decoding


def live_chunks(live: LiveLandmarks, audio: torch.Tensor, chunk: int, lookahead: int) -> list[torch.Tensor]:
    """Registered landmarks ``[chunk, 68, 3]`` per chunk of ``audio [1, T, 20, 80]``, each chunk decoded when
    ``lookahead`` frames after it have been heard, every frame's window handed over once."""
    frames, heard, parts = audio.shape[1], 0, []
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        high = min(frames, stop + lookahead)
        parts.append(live(audio[:, heard:high], stop - start)[0])
        heard = high
    return parts


@pytest.mark.parametrize(("chunk", "scope", "mode"), [(23, "frame", "max"), (4, "frame", "mean"), (4, "clip", "max")])
def test_live_decoding_with_the_whole_recording_as_look_ahead_equals_generate(chunk, scope, mode):
    """One chunk, or chunks of 4 whose look-ahead reaches the end: the carried forward state, the cached encodings,
    the smoothing over past frames and the clip's pooled logits give what ``generate`` gives (closure head on)."""
    torch.manual_seed(0)
    model = small_model(closure_weight=1.0, mixture_scope=scope, statistics=None).eval()  # normalised units
    reference, audio = fixed_batch()["reference"][0], torch.rand(1, 23, 20, 80)
    expected = model.generate(audio, reference, mode=mode)["registered"][0]
    track = torch.cat(live_chunks(LiveLandmarks(model, reference, mode), audio, chunk, lookahead=23))
    torch.testing.assert_close(track, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mode max or mean"):
        LiveLandmarks(model, reference, "sample")


def test_a_live_chunk_carries_the_whole_past_and_sees_only_its_look_ahead():
    """Without smoothing, a chunk decoded live equals ``generate`` on the audio up to the end of its look-ahead:
    the forward direction has run over the whole past (carried, not restarted per chunk), the backward direction
    only from the look-ahead's end."""
    torch.manual_seed(0)
    model = small_model(smoothing=0.0, statistics=None).eval()  # normalised units: the states count fully
    reference, audio = fixed_batch()["reference"][0], torch.rand(1, 23, 20, 80)
    parts = live_chunks(LiveLandmarks(model, reference), audio, chunk=4, lookahead=2)
    for start, part in zip(range(0, 23, 4), parts, strict=True):
        heard = audio[:, : min(23, start + 4 + 2)]
        expected = model.generate(heard, reference)["registered"][0, start : start + 4]
        torch.testing.assert_close(part, expected, atol=1e-5, rtol=1e-5)
    whole = model.generate(audio, reference)["registered"][0]
    assert (torch.cat(parts) - whole).abs().max() > 1e-4, "a bounded look-ahead should change the backward states"


def test_reference_noise_reaches_the_reference_encoder_in_training_only():
    model, batch = small_model(reference_noise=3.0, dropout=0.0), fixed_batch()
    model.train()
    first, second = (model(batch["audio"], batch["reference"])["means"] for _ in range(2))
    assert not torch.allclose(first, second)
    model.eval()
    first, second = (model(batch["audio"], batch["reference"])["means"] for _ in range(2))
    torch.testing.assert_close(first, second)
    quiet = small_model(dropout=0.0).train()
    first, second = (quiet(batch["audio"], batch["reference"])["means"] for _ in range(2))
    torch.testing.assert_close(first, second)


def test_training_modes_freeze_or_slow_the_sfe():
    last, ft, everything = small_model(mode="last"), small_model(mode="ft", lr=1e-3), small_model(mode="all")
    assert not any(parameter.requires_grad for parameter in last.sfe.parameters())
    last.train()
    assert last.head.training and not any(module.training for module in last.sfe.modules())
    assert len(last.configure_optimizers().param_groups) == 2
    groups = ft.configure_optimizers().param_groups
    assert groups[-1]["lr"] == pytest.approx(1e-4) and groups[0]["lr"] == pytest.approx(1e-3)
    assert groups[0]["weight_decay"] > 0 and groups[1]["weight_decay"] == 0
    assert everything.configure_optimizers().param_groups[-1]["lr"] == everything.hparams.lr
    with pytest.raises(ValueError, match="mode must be last, ft or all"):
        small_model(mode="frozen")


def test_an_sfe_checkpoint_is_taken_over_with_its_settings_and_the_mdn_reloads_without_it(tmp_path, sfe_checkpoint):
    model = LandmarkMDN(sfe_checkpoint=str(sfe_checkpoint), statistics=clip_statistics(SyntheticLandmarkClips(8, 12)))
    source = SFEPretraining(**TINY)
    source.load_state_dict(torch.load(sfe_checkpoint, weights_only=True)["state_dict"])
    for name, value in source.audio.state_dict().items():
        torch.testing.assert_close(model.sfe.state_dict()[name], value, rtol=0, atol=0)
    assert model.hparams.sfe_hparams["gru_hidden"] == TINY["gru_hidden"]
    assert model.hparams.sfe_hparams["step_stride"] == 3

    copy = tmp_path / "sfe-copy.ckpt"
    copy.write_bytes(sfe_checkpoint.read_bytes())
    trained = LandmarkMDN(sfe_checkpoint=str(copy), statistics=model.hparams.statistics).eval()
    path = save_checkpoint(trained, tmp_path / "mdn.ckpt", "mdn")
    copy.unlink()
    reloaded = load_landmark_mdn(path)
    assert not reloaded.training
    batch = fixed_batch()
    for mode in ("max", "sample"):
        expected = trained.generate(batch["audio"][:1], batch["reference"][0], mode=mode, samples=2)
        got = reloaded.generate(batch["audio"][:1], batch["reference"][0], mode=mode, samples=2)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def assert_one_sentence(error: pytest.ExceptionInfo, path: Path, *found: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0, message
    assert str(path) in message, message
    for text in found:
        assert text in message, message


def test_checkpoint_errors_say_what_was_expected_and_what_was_found(tmp_path, sfe_checkpoint):
    with pytest.raises(CheckpointError) as error:
        LandmarkMDN(sfe_checkpoint=str(sfe_checkpoint), sfe_hparams={"gru_hidden": 512, "memory": True})
    assert_one_sentence(error, sfe_checkpoint, "expected gru_hidden 512", "found gru_hidden 32")

    resized = torch.load(sfe_checkpoint, weights_only=True)
    resized["state_dict"]["audio.gru.weight_hh_l0"] = torch.zeros(3, 3)
    torch.save(resized, tmp_path / "resized.ckpt")
    with pytest.raises(CheckpointError) as error:
        LandmarkMDN(sfe_checkpoint=str(tmp_path / "resized.ckpt"))
    assert_one_sentence(error, tmp_path / "resized.ckpt", "an SFE checkpoint", "of another shape: gru.weight_hh_l0")

    mdn = save_checkpoint(small_model(), tmp_path / "mdn.ckpt", "mdn")
    with pytest.raises(CheckpointError) as error:
        LandmarkMDN(sfe_checkpoint=str(mdn))
    assert_one_sentence(error, mdn, "is not an SFE checkpoint", "stage 'mdn'")
    with pytest.raises(CheckpointError) as error:
        load_landmark_mdn(sfe_checkpoint)
    assert_one_sentence(error, sfe_checkpoint, "is not an MDN checkpoint", "stage 'sfe'")
    with pytest.raises(CheckpointError) as error:
        load_landmark_mdn(tmp_path / "absent.ckpt")
    assert_one_sentence(error, tmp_path / "absent.ckpt", "does not exist", "expected an MDN checkpoint")
    with pytest.raises(CheckpointError) as error:
        LandmarkMDN(sfe_checkpoint=str(tmp_path / "absent.ckpt"))
    assert_one_sentence(error, tmp_path / "absent.ckpt", "does not exist", "expected an SFE checkpoint")


def test_bad_statistics_are_refused_with_one_sentence():
    with pytest.raises(ValueError, match="must be index.json's statistics"):
        small_model(statistics={"registered": {"mean": [0.0] * 5}})


# Training


def test_a_randomly_initialised_sfe_trains_and_logs_metrics_with_their_baselines():
    """``sfe_checkpoint: null`` (the no-pretraining ablation) trains; validation logs every figure."""
    model = small_model(sfe_checkpoint=None, eval_samples=3)
    trainer = quiet_trainer(max_steps=3, gradient_clip_val=1.0)
    trainer.fit(model, SyntheticLandmarkData(frames=8, batch_size=4, train_clips=12, val_clips=4))
    logged = trainer.callback_metrics
    names = ["loss", "nll", "dirichlet", "lmd_mouth", "lmd_face", "lvd", "mouth_corr", "best_of_k_lmd_mouth",
             "diversity", "weight_0", "weight_1", "weight_2", "weight_entropy", "static/lmd_mouth", "static/lvd",
             "shuffled/lmd_mouth", "shuffled/mouth_corr"]  # fmt: skip
    for name in names:
        assert math.isfinite(logged[f"val/{name}"]), name
    assert logged["val/static/mouth_corr"] == 0 and logged["val/diversity"] > 0
    total = sum(logged[f"val/weight_{component}"] for component in range(3))
    assert total.item() == pytest.approx(1.0, abs=1e-4)
    assert 0 <= logged["val/weight_entropy"] <= math.log(3) + 1e-6


def test_bf16_mixed_loss_is_close_to_fp32_on_the_same_batch():
    seed_everything(0)
    model = small_model(mode="all")
    data = SyntheticLandmarkData(frames=12, batch_size=4, val_clips=4)
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        (result,) = quiet_trainer(precision=precision).validate(model, data, verbose=False)
        losses[precision] = result["val/nll"]
    assert math.isfinite(losses["bf16-mixed"])
    assert losses["bf16-mixed"] == pytest.approx(losses["32-true"], abs=0.05 * abs(losses["32-true"]) + 0.02)
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())


def run_mdn_ddp(mode: str, out_dir: Path) -> list[dict]:
    out_dir.mkdir()
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "mdn_ddp.py"), mode, str(out_dir)], cwd=ROOT,
                         timeout=600, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, f"{mode} run failed:\n{run.stderr[-4000:]}"
    return [torch.load(path, weights_only=True) for path in sorted(out_dir.glob("rank*.pt"))]


def test_ddp_on_two_cpu_processes_matches_one_process_on_the_global_batch(tmp_path):
    (single,) = run_mdn_ddp("single", tmp_path / "single")
    ranks = run_mdn_ddp("ddp", tmp_path / "ddp")
    assert [rank["clips"] for rank in ranks] == [4, 4] and single["clips"] == 8
    torch.testing.assert_close(torch.stack([rank["loss"] for rank in ranks]).mean(), single["loss"])
    assert single["grads"].keys() == ranks[0]["grads"].keys()
    for name, grad in single["grads"].items():
        for rank in ranks:
            torch.testing.assert_close(rank["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


# Metrics


def test_mouth_correlation_is_within_clips_and_diversity_is_zero_for_identical_samples():
    batch = fixed_batch(clips=3, frames=20)
    true, mask = batch["registered"], batch["mask"]
    metric = MouthOpeningCorrelation()
    metric.update(true, true, mask)
    assert metric.compute().item() == pytest.approx(1.0)
    offset = true.clone()
    offset[:, :, 65:68, 1] += torch.tensor([0.1, 0.2, 0.3])[:, None, None]  # per-clip constant: no information
    metric = MouthOpeningCorrelation()
    metric.update(offset, true, mask)
    assert metric.compute().item() == pytest.approx(1.0)
    diversity = SampleDiversity()
    diversity.update(true[None].expand(4, -1, -1, -1, -1), mask)
    assert diversity.compute().item() == 0
    spread = true[None].repeat(3, 1, 1, 1, 1)
    spread[1, ..., 0] += 0.3  # sample 1 moved 0.3 right, sample 2 0.4 down: pair distances 0.3, 0.4 and 0.5
    spread[2, ..., 1] += 0.4
    diversity = SampleDiversity()
    diversity.update(spread, mask)
    assert diversity.compute().item() == pytest.approx(0.4, abs=1e-5)


# Learning on the session corpus (the default suite's learning test on the real pipeline)


SESSION_FIT = dict(max_epochs=150, lr=3e-3, frames=32, eval_frames=48)
MOUTH_MARGIN = 0.2
"""Held-out mouth-opening correlation over the same model's with time-shuffled audio: under the worst of 5 seeds
(0.309, the test's docstring) with room."""


def short_fit_on_session_shards(shards: Path, seed: int) -> dict[str, dict[str, float]]:
    """A tiny MDN (random SFE trained with the head) fitted with ``seed`` on the training clips of ``shards`` (one
    batch of all of them, random windows), then its figures on each held-out split: val and test, which choose
    nothing here (no validation during the fit, the last weights are judged), on windows of nearly a whole clip."""
    seed_everything(seed)
    train_clips = len(json.loads((shards / "index.json").read_text())["splits"]["train"])
    data = LandmarkDataModule(str(shards), frames=SESSION_FIT["frames"], batch_size=train_clips, num_workers=0,
                              seed=seed)  # fmt: skip
    model = LandmarkMDN(sfe_hparams=TINY_SFE, mode="all", statistics=data.statistics, reference_noise=3.0,
                        lr=SESSION_FIT["lr"], **SMALL_HEAD)  # fmt: skip
    trainer = quiet_trainer(max_epochs=SESSION_FIT["max_epochs"], limit_val_batches=0, gradient_clip_val=1.0,
                            log_every_n_steps=10)  # fmt: skip
    trainer.fit(model, data)
    return {split: figures(model.eval(), shards, split, frames=SESSION_FIT["eval_frames"]) for split in ("val", "test")}


def test_a_short_fit_on_the_session_corpus_moves_the_mouth_with_the_speech_of_held_out_speakers(synthetic_shards):
    """Shards of real photos speaking TTS speech (the session corpus: MediaPipe landmarks, mel windows) through
    LandmarkDataModule into LandmarkMDN: after a short fit on the training speaker's two clips, the predicted mouth
    opening of the six held-out clips (val: another person, test: two more) follows the true one better than the
    same model's given time-shuffled audio: the margin, each split's weighted by its clips, is at least
    MOUTH_MARGIN. Seeds 0-4 gave 0.596, 0.601, 0.661, 0.309 and 0.665 (val, test: 0.91 and 0.44, 0.97 and 0.42,
    0.96 and 0.51, 0.75 and 0.09, 1.00 and 0.50); the shuffled audio's correlation swings from -0.28 to 0.30 with
    its one permutation, so a split alone is too noisy to judge. With the audio zeroed in LandmarkMDN.forward the
    margin is 0 (the prediction ignores the audio), and the test fails."""
    clips = {
        split: len(names)
        for split, names in json.loads((synthetic_shards / "index.json").read_text())["splits"].items()
    }
    held_out = short_fit_on_session_shards(synthetic_shards, seed=0)
    margins = [
        clips[split] * (figure["val/mouth_corr"] - figure["val/shuffled/mouth_corr"])
        for split, figure in held_out.items()
    ]
    margin = sum(margins) / sum(clips[split] for split in held_out)
    assert margin >= MOUTH_MARGIN, f"held-out mouth correlation over time-shuffled audio's {margin:.3f}: {held_out}"


# Learning on the embedded corpus


def test_figures_per_speaker_group_mask_other_speakers_and_find_the_held_out_voice(synthetic_shards, tmp_path):
    data = LandmarkDataModule(str(synthetic_shards), frames=16, batch_size=4, num_workers=0)
    data.setup("fit")
    test_speakers = {
        data.speakers[int(index)] for batch in data.loader("test", train=False) for index in batch["speaker"]
    }
    voice = held_out_voice_speakers(synthetic_shards)
    assert voice and voice < test_speakers, (voice, test_speakers)
    for batch in masked_batches(data, "test", voice):
        for speaker, mask in zip(batch["speaker"], batch["mask"], strict=True):
            assert (mask.sum() > 0) == (data.speakers[int(speaker)] in voice)

    model = LandmarkMDN(sfe_hparams=TINY_SFE, statistics=data.statistics, **SMALL_HEAD)
    checkpoint = save_checkpoint(model, tmp_path / "tiny.ckpt", "mdn")
    assert mdn_figures_main([f"tiny={checkpoint}", f"tiny={checkpoint}", "--data", str(synthetic_shards),
                             "--frames", "16", "--out", str(tmp_path / "figures.md")]) == 0  # fmt: skip
    first, second = json.loads((tmp_path / "figures.json").read_text())["tiny"]
    assert first == second, "the same checkpoint twice gives the same figures"
    rows = first
    assert list(rows) == list(speaker_groups(synthetic_shards)) and len(rows) == 3
    assert rows["held-out person (test)"]["val/static/lmd_mouth"] != rows[next(iter(rows))]["val/static/lmd_mouth"]
    assert (tmp_path / "figures.md").read_text().count("| tiny (2 runs) |") == 3
    assert "0.0000" in (tmp_path / "figures.md").read_text(), "std over two equal runs"
    assert (
        "(test) rows and the held-out voice are on the test split, which chose nothing"
        in (tmp_path / "figures.md").read_text()
    )
    assert mdn_figures_main([str(tmp_path / "absent.ckpt"), "--data", str(synthetic_shards)]) == 2


def test_figures_split_the_held_out_speakers_by_person_when_they_are_several(tmp_path):
    """On an embedded corpus whose val split holds two people, each gets its own group beside the whole split; one
    person in val (or no corpus marker) gives no such groups."""
    raw, shards = tmp_path / "raw", tmp_path / "shards"
    raw.mkdir()
    shards.mkdir()
    people = {"spkA": "astronaut", "spkB": "camera", "spkC": "astronaut"}
    marker = {
        "generator": "datamodules.synthetic",
        "speakers": {speaker: {"split": "pretrain", "photo": photo} for speaker, photo in people.items()},
    }
    (raw / "corpus.json").write_text(json.dumps(marker))
    index = {"raw": str(raw), "splits": {"val": ["pretrain/spkA/00001", "pretrain/spkB/00001"], "test": []}}
    (shards / "index.json").write_text(json.dumps(index))
    groups = speaker_groups(shards)
    assert groups["held-out speakers: astronaut (val)"] == ("val", {"spkA"})
    assert groups["held-out speakers: camera (val)"] == ("val", {"spkB"})
    assert groups["held-out speakers (val)"] == ("val", None)
    index["splits"]["val"] = ["pretrain/spkA/00001", "pretrain/spkC/00002"]
    (shards / "index.json").write_text(json.dumps(index))
    assert list(speaker_groups(shards)) == ["held-out speakers (val)", "held-out person (test)"]


def test_a_moved_raw_corpus_is_said_in_one_sentence_and_raw_finds_its_speaker_groups(tmp_path, capsys):
    """The speaker groups come from the raw corpus's corpus.json: when it moved, the figures say so (they used to
    drop the groups without a word), and --raw gives them back."""
    moved, shards = tmp_path / "moved", tmp_path / "shards"
    moved.mkdir()
    shards.mkdir()
    people = {"spkA": "astronaut", "spkB": "camera"}
    marker = {
        "generator": "datamodules.synthetic",
        "speakers": {speaker: {"split": "pretrain", "photo": photo} for speaker, photo in people.items()},
    }
    (moved / "corpus.json").write_text(json.dumps(marker))
    index = {"raw": str(tmp_path / "raw"), "splits": {"val": ["pretrain/spkA/00001", "pretrain/spkB/00001"]}}
    (shards / "index.json").write_text(json.dumps(index))
    assert list(speaker_groups(shards)) == ["held-out speakers (val)", "held-out person (test)"]
    note = capsys.readouterr().err.strip()
    assert note.startswith(f"note: The raw corpus that {shards} was made from ({tmp_path / 'raw'}) is not here")
    assert "--raw" in note and "\n" not in note
    assert "held-out speakers: camera (val)" in speaker_groups(shards, moved)


MDN_SEEDS = (1, 2, 3)


def mean_figures(runs: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each figure over the runs (seeds) given."""
    return {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}


@pytest.mark.slow
def test_fast_mdn_on_the_embedded_corpus_follows_the_speech_of_held_out_speakers(embedded_shards, tmp_path):
    """FAST SFE pretraining, then FAST MDN (M = 3 and M = 1) with 3 seeds each on the embedded corpus, judged by
    their best checkpoints (what `make generate` takes) on the test split: the val split chose those checkpoints
    (``val/lmd_mouth``), the test split chose nothing. It is the held-out person (no training clip has her face),
    half of it speaking with the held-out voice (no training speaker's). Every seed's mouth beats the static
    reference, follows the speech and stops following it when the audio is shuffled; its mixture keeps every
    component alive (weights near uniform, 0.32-0.36 in docs/mdn.md's runs) and its hypotheses apart (several
    times M = 1's sampling spread). Over the seeds, as docs/mdn.md's tables report them (held-out person 21%
    below static there): the mouth is at least 10% nearer the truth than the static reference (the shuffled
    audio's is 4%), M = 3's best of 5 is nearer than its own most likely track and within 3% of M = 1's (on this
    held-out person it does not beat M = 1: 0.0219 against 0.0217 on 2026-12-02, docs/mdn.md), and on the held-out
    voice the mouth beats the static face and follows the speech."""
    shards = ["--data.shards", str(embedded_shards)]
    sfe = fast_fit(tmp_path, "sfe", "fast", *shards)
    sfe_flag = ["--model.init_args.sfe_checkpoint", sfe.trainer.checkpoint_callback.best_model_path]
    voice = held_out_voice_speakers(embedded_shards)
    assert voice, "the embedded corpus has no test speaker with the held-out voice"
    person, unseen_voice, single = [], [], []
    for seed in MDN_SEEDS:
        seed_flag = ["--seed_everything", str(seed)]
        mixture = fast_fit(tmp_path, "mdn", f"m3-{seed}", *shards, *sfe_flag, *seed_flag)
        regression = fast_fit(tmp_path, "mdn", f"m1-{seed}", *shards, *sfe_flag, *seed_flag,
                              "--model.init_args.components", "1")  # fmt: skip
        mixture = load_landmark_mdn(mixture.trainer.checkpoint_callback.best_model_path)
        regression = load_landmark_mdn(regression.trainer.checkpoint_callback.best_model_path)
        person.append(figures(mixture, embedded_shards, "test"))
        unseen_voice.append(figures(mixture, embedded_shards, "test", voice))
        single.append(figures(regression, embedded_shards, "test"))
        print({"seed": seed, "M=3 held-out person": person[-1], "M=3 held-out voice": unseen_voice[-1],
               "M=1 held-out person": single[-1]})  # fmt: skip
    pictures = sorted((tmp_path / "mdn" / "m3-1" / "pictures").glob("*.mp4"))
    assert pictures and len(read_video(pictures[-1])) == 32, "the landmark animation shows the 32-frame window"
    for seed, run, regression in zip(MDN_SEEDS, person, single, strict=True):
        assert run["val/lmd_mouth"] < run["val/static/lmd_mouth"], f"seed {seed}"
        assert run["val/mouth_corr"] >= 0.5 and run["val/shuffled/mouth_corr"] < 0.2, f"seed {seed}"
        assert run["val/diversity"] >= 2 * regression["val/diversity"], f"seed {seed}: the hypotheses collapsed"
        assert all(run[f"val/weight_{component}"] >= 0.2 for component in range(3)), f"seed {seed}: a dead component"

    person, unseen_voice, single = mean_figures(person), mean_figures(unseen_voice), mean_figures(single)
    assert person["val/lmd_mouth"] <= 0.9 * person["val/static/lmd_mouth"]
    assert person["val/best_of_k_lmd_mouth"] < person["val/lmd_mouth"], "no sample nearer than the most likely track"
    assert person["val/best_of_k_lmd_mouth"] <= 1.03 * single["val/lmd_mouth"], "the mixture costs accuracy"
    assert unseen_voice["val/lmd_mouth"] < unseen_voice["val/static/lmd_mouth"]
    assert unseen_voice["val/mouth_corr"] > unseen_voice["val/shuffled/mouth_corr"] + 0.3
