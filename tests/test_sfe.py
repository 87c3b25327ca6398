"""Stage 1 (lightning_modules/sfe.py): a fit through the project CLI, checkpoint hand-off, learning, DDP, bf16."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import seed_everything

from datamodules.sfe import SFEDataModule
from experiments.cli import MACLCLI, RunError, main
from lightning_modules.checkpoints import STAGE_KEY, CheckpointError
from lightning_modules.nets.sfe import SpeechFeatureExtractor
from lightning_modules.sfe import REMOVED, SFEPretraining, drop_removed_parameters, load_speech_feature_extractor
from tests.sfe_data import TINY, SyntheticClips, SyntheticSFEData
from tests.toy import ToyData, ToyRegression
from tests.trainer import fast_configs, fast_fit, quiet_trainer

ROOT = Path(__file__).resolve().parents[1]


SYNTHETIC = ["--data", "tests.sfe_data.SyntheticSFEData", "--data.steps", "4", "--data.image_size", "32",
             "--data.val_clips", "8"]  # fmt: skip
"""The FAST fit's data replaced by synthetic tensors (a test DataModule; add ``--data.train_clips``)."""


def cli_fit(tmp_path: Path, name: str, *extra: str, trainer: str = "trainer/cpu.yaml") -> MACLCLI:
    """The FAST fit on synthetic tensors, cut to 2 epochs of 2 batches, validating each."""
    epochs = ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1"]
    return fast_fit(tmp_path, "sfe", name, *SYNTHETIC, "--data.train_clips", "16", *epochs, *extra, trainer=trainer)


def fixed_batch(steps: int = 4, clips: int = 3, image_size: int = 32) -> dict:
    dataset = SyntheticClips(clips, steps, image_size, seed=7)
    return torch.utils.data.default_collate([dataset[index] for index in range(clips)])


def test_fast_cli_fit_writes_a_checkpoint_that_reloads_identically_and_resumes(tmp_path):
    cli = cli_fit(tmp_path, "first")
    run_dir = tmp_path / "sfe" / "first"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * 2  # 2 epochs of 16 clips in batches of 8
    for name in ("val/loss", "val/sync_top1", "val/sync_top5", "val/id_top1", "val/id_top3"):
        assert math.isfinite(metrics[name]), name
    assert 1 <= metrics["val/memory_perplexity_content"] <= cli.model.hparams.memory_slots
    assert cli.model.hparams.gru_hidden == 128, "conf/fast/sfe.yaml should shrink the model"
    assert metrics["best_monitor"] == cli.trainer.checkpoint_callback.monitor == "val/sync_loss"

    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint[STAGE_KEY]["stage"] == "sfe"

    batch = fixed_batch()
    trained = cli.model.eval()
    reloaded = SFEPretraining.load_from_checkpoint(last).eval()
    handoff = load_speech_feature_extractor(last)
    audio_branch = handoff.net.eval()
    assert isinstance(audio_branch, SpeechFeatureExtractor)
    assert handoff.hparams["gru_hidden"] == 128 and handoff.hparams["step_stride"] == 3
    with torch.no_grad():
        expected = trained(batch["audio"])
        for name, value in reloaded(batch["audio"]).items():
            torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
        for name, value in audio_branch(batch["audio"]).items():
            torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
        for got, want in zip(reloaded.visual(batch["frames"]), trained.visual(batch["frames"]), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)

    cli_fit(tmp_path, "first", "--trainer.max_epochs", "3")
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["global_step"] == 3 * 2
    assert torch.load(last, weights_only=True)["global_step"] == 3 * 2


def test_a_model_that_does_not_fit_the_shards_is_refused_before_training(tmp_path, capsys):
    """Mel bins and the audio window come from the shards' index.json, frames per step from the DataModule."""
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "index.json").write_text(json.dumps({"mel_bins": 80, "mels_per_frame": 4, "speakers": [], "splits": {}}))
    args = [*fast_configs("sfe"), "--run.root", str(tmp_path), "--data.shards", str(shards)]

    fitting = MACLCLI(args=args, run=False)
    assert (fitting.model.hparams.mel_bins, fitting.model.hparams.window_frames) == (80, 20)
    with pytest.raises(RunError) as error:
        MACLCLI(args=[*args, "--model.init_args.mel_bins", "64", "--model.init_args.frames_per_step", "3"], run=False)
    message = str(error.value)
    assert f"{shards}/index.json" in message and "\n" not in message and ". " not in message, message
    assert "mel_bins is 64 but the shards give 80" in message and "frames_per_step is 3 but" in message, message

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--model.init_args.window_frames", "16"])
    assert exit_info.value.code == 1
    assert "window_frames is 16 but the shards give 20" in capsys.readouterr().err


@pytest.mark.parametrize("memory", [True, False])
def test_a_training_step_runs_with_and_without_memory(memory):
    model = SFEPretraining(**TINY, memory=memory)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=1)
    trainer.fit(model, SyntheticSFEData(steps=4, batch_size=4, train_clips=8, val_clips=4))
    logged = trainer.callback_metrics
    assert math.isfinite(logged["val/loss"])
    assert ("val/memory_perplexity_content" in logged) is memory
    readout = type(model.audio.content_memory).__name__
    assert readout == ("MemoryBank" if memory else "LinearReadout")


def identity_chance(speakers: torch.Tensor) -> float:
    """Top-1 chance of the identity match for a batch's speaker ids ``[B]``: the mean over queries of one over
    the candidates left once the other clips of the query's speaker are masked out (as the speaker loss does)."""
    same_speaker = (speakers[:, None] == speakers[None, :]).sum(1)  # [B], the query's own clip included
    return (1.0 / (len(speakers) - same_speaker + 1)).mean().item()


def test_identity_chance_counts_the_candidates_left_after_masking():
    assert identity_chance(torch.arange(8)) == pytest.approx(1 / 8)
    assert identity_chance(torch.arange(8) % 4) == pytest.approx(1 / 7)  # two clips per speaker
    assert identity_chance(torch.tensor([0, 0, 0, 1])) == pytest.approx((3 / 2 + 1 / 4) / 4)


def test_short_training_learns_sync_and_identity_on_synthetic_clips():
    """Frames show a mouth state that the audio encodes: sync must beat chance and time-shuffled audio, identity
    must beat the chance left by its candidates (same-speaker clips are masked out)."""
    seed_everything(0)
    steps, batch_size = 8, 8
    model = SFEPretraining(**TINY, lr=5e-3)
    trainer = quiet_trainer(max_epochs=16)  # 8 left sync top-1 at 0.18 with one torch thread (0.46 at 16)
    trainer.fit(model, SyntheticSFEData(steps=steps, batch_size=batch_size, train_clips=128, val_clips=32))

    aligned = SyntheticSFEData(steps=steps, batch_size=batch_size, val_clips=32)
    shuffled = SyntheticSFEData(steps=steps, batch_size=batch_size, val_clips=32, time_shuffled=True)
    (held_out,) = trainer.validate(model, aligned, verbose=False)
    (no_sync,) = trainer.validate(model, shuffled, verbose=False)

    sync_chance = 1 / steps
    chances = [identity_chance(batch["speaker"]) for batch in aligned.val_dataloader()]
    identity_chance_top1 = sum(chances) / len(chances)  # 1/7: each batch holds two clips of each of 4 speakers
    assert held_out["val/sync_top1"] >= 2 * sync_chance
    assert held_out["val/sync_top1"] >= no_sync["val/sync_top1"] + sync_chance
    assert held_out["val/id_top1"] >= 2 * identity_chance_top1, (held_out["val/id_top1"], identity_chance_top1)


def test_bf16_mixed_training_on_cpu_gives_finite_losses_close_to_fp32():
    """Two bf16-mixed training steps, then validation of the same weights on the same batches in bf16-mixed and
    in fp32: the losses agree within 2% (bf16 keeps 8 bits of mantissa, about 0.4% per rounding)."""
    seed_everything(0)
    model = SFEPretraining(**TINY)
    data = SyntheticSFEData(steps=4, batch_size=4, train_clips=8, val_clips=8)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=1, precision="bf16-mixed")
    trainer.fit(model, data)
    for name in ("train/loss", "train/sync_loss", "train/speaker_loss", "val/loss"):
        assert math.isfinite(trainer.callback_metrics[name]), name
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())

    (mixed,) = quiet_trainer(precision="bf16-mixed").validate(model, data, verbose=False)
    (full,) = quiet_trainer(precision="32-true").validate(model, data, verbose=False)
    for name in ("val/loss", "val/sync_loss", "val/speaker_loss"):
        assert mixed[name] == pytest.approx(full[name], rel=2e-2), name
    assert mixed["val/loss"] != full["val/loss"], "the bf16 run should round differently from fp32"


def run_sfe_ddp(mode: str, out_dir: Path) -> list[dict]:
    """tests/sfe_ddp.py in a subprocess (Lightning's DDP launcher re-executes sys.argv); the ranks' records."""
    out_dir.mkdir()
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sfe_ddp.py"), mode, str(out_dir)],
        cwd=ROOT,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, f"{mode} run failed:\n{run.stderr[-4000:]}"
    return [torch.load(path, weights_only=True) for path in sorted(out_dir.glob("rank*.pt"))]


def test_ddp_on_two_cpu_processes_matches_one_process_on_the_global_batch(tmp_path):
    """The 2-rank loss (mean over ranks) and DDP-averaged gradients equal one process's on all 8 clips, and
    with 5 + 3 clips on the ranks the clip-weighted loss still does (the gather pads and drops rows).

    Batch norm is in eval mode in all runs (tests/sfe_ddp.py says why), so only the gather can differ.
    """
    (single,) = run_sfe_ddp("single", tmp_path / "single")
    ranks = run_sfe_ddp("ddp", tmp_path / "ddp")
    assert [rank["clips"] for rank in ranks] == [4, 4] and single["clips"] == 8
    torch.testing.assert_close(torch.stack([rank["loss"] for rank in ranks]).mean(), single["loss"])
    for name, grad in single["grads"].items():
        for rank in ranks:
            torch.testing.assert_close(rank["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)

    uneven = run_sfe_ddp("uneven", tmp_path / "uneven")
    assert [rank["clips"] for rank in uneven] == [5, 3]
    weighted = sum(rank["clips"] * rank["loss"] for rank in uneven) / single["clips"]
    torch.testing.assert_close(weighted, single["loss"])


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy.ckpt"
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(ToyRegression(), ToyData())
    trainer.save_checkpoint(path)
    return path


def assert_one_sentence(error: pytest.ExceptionInfo, path: Path, *found: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0, message
    assert str(path) in message and "an SFE checkpoint" in message, message
    for text in found:
        assert text in message, message


def test_another_stage_checkpoint_is_refused_with_what_it_is(toy_checkpoint):
    with pytest.raises(CheckpointError) as error:
        load_speech_feature_extractor(toy_checkpoint)
    assert_one_sentence(error, toy_checkpoint, "hyper-parameters features, lr", "weights of linear")


def test_a_corrupt_or_truncated_or_missing_file_is_refused(tmp_path):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    truncated = tmp_path / "truncated.ckpt"
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(SFEPretraining(**TINY), SyntheticSFEData(steps=4, batch_size=4, train_clips=4))
    trainer.save_checkpoint(tmp_path / "whole.ckpt")
    whole = (tmp_path / "whole.ckpt").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    weights_only = tmp_path / "weights.pt"
    torch.save(SFEPretraining(**TINY).state_dict(), weights_only)

    for path in (corrupt, truncated):
        with pytest.raises(CheckpointError) as error:
            load_speech_feature_extractor(path)
        assert_one_sentence(error, path, "cannot be read as a PyTorch checkpoint")
    with pytest.raises(CheckpointError) as error:
        load_speech_feature_extractor(weights_only)
    assert_one_sentence(error, weights_only, "no Lightning state_dict")
    with pytest.raises(CheckpointError) as error:
        load_speech_feature_extractor(tmp_path / "absent.ckpt")
    assert_one_sentence(error, tmp_path / "absent.ckpt", "does not exist")
    assert isinstance(load_speech_feature_extractor(tmp_path / "whole.ckpt").net, SpeechFeatureExtractor)


def test_the_handoff_carries_the_settings_and_gives_old_checkpoints_the_default_step_stride(tmp_path):
    """Stage 2 reads feature size, memory and step stride from the hand-off; a checkpoint written before
    ``step_stride`` existed loads with the published 3."""
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(SFEPretraining(**TINY, memory=False, step_stride=2), SyntheticSFEData(steps=4, train_clips=4))
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    checkpoint = torch.load(tmp_path / "new.ckpt", weights_only=True)
    del checkpoint["hyper_parameters"]["step_stride"]
    torch.save(checkpoint, tmp_path / "old.ckpt")

    new = load_speech_feature_extractor(tmp_path / "new.ckpt")
    old = load_speech_feature_extractor(tmp_path / "old.ckpt")
    assert (new.hparams["feature_dim"], new.hparams["memory"], new.hparams["step_stride"]) == (16, False, 2)
    assert (old.hparams["feature_dim"], old.hparams["memory"], old.hparams["step_stride"]) == (16, False, 3)
    assert type(old.net.content_memory).__name__ == "LinearReadout"
    for name, value in old.net.state_dict().items():
        torch.testing.assert_close(value, new.net.state_dict()[name], rtol=0, atol=0)


def test_a_checkpoint_written_with_the_similarity_biases_loads_strictly_and_resumes(tmp_path):
    """Older checkpoints hold a bias after each similarity's scale (the published one, removed as it never changed
    a loss): it is dropped from the weights and from Adam's states, which follow their parameters."""
    old = SFEPretraining(**TINY)
    for loss in (old.sync_loss, old.speaker_loss):
        loss.similarity.bias = torch.nn.Parameter(torch.tensor(-5.0))  # registered after the scale, as it was
    data = SyntheticSFEData(steps=4, batch_size=4, train_clips=4)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(old, data)
    trainer.save_checkpoint(tmp_path / "old.ckpt")
    checkpoint = torch.load(tmp_path / "old.ckpt", weights_only=True)
    assert set(REMOVED) <= set(checkpoint["state_dict"])

    loaded = SFEPretraining.load_from_checkpoint(tmp_path / "old.ckpt")  # strict
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, old.state_dict()[name], rtol=0, atol=0, msg=name)
    names = [name for name, _ in loaded.named_parameters()]
    old_names = [name for name, _ in old.named_parameters()]
    old_states = trainer.optimizers[0].state_dict()["state"]
    drop_removed_parameters(checkpoint, names)
    (states,) = checkpoint["optimizer_states"]
    assert states["param_groups"][0]["params"] == list(range(len(names)))
    for now, name in enumerate(names):
        for key, value in states["state"][now].items():
            torch.testing.assert_close(value, old_states[old_names.index(name)][key], rtol=0, atol=0, msg=name)

    resumed = quiet_trainer(max_steps=2, limit_val_batches=0)
    resumed.fit(SFEPretraining(**TINY), data, ckpt_path=tmp_path / "old.ckpt")
    assert resumed.global_step == 2 and math.isfinite(resumed.callback_metrics["train/loss"])


def accuracies(model: SFEPretraining, data: SFEDataModule, split: str, shuffles: int = 5) -> dict[str, float]:
    """Sync top-1 with the true audio and with time-shuffled audio (mean of ``shuffles`` permutations), and
    identity top-1 with its chance (other clips of a query's speaker masked out, as in training), over the
    evaluation batches of ``split`` (as the DataModule hands them to a model)."""
    generator = torch.Generator().manual_seed(0)
    totals = {"sync": 0.0, "shuffled": 0.0, "identity": 0.0, "identity_chance": 0.0}
    clips = 0
    with torch.no_grad():
        for loaded in data.loader(split, train=False):
            batch = data.on_after_batch_transfer(loaded, 0)
            batch_size, steps = batch["audio"].shape[:2]
            visual_content, visual_speaker = model.visual(batch["frames"])
            audio = model.audio(batch["audio"])
            totals["sync"] += model.sync_loss(audio["content"], visual_content).accuracy(1).item() * batch_size
            for _ in range(shuffles):
                shuffled = batch["audio"][:, torch.randperm(steps, generator=generator)]
                accuracy = model.sync_loss(model.audio(shuffled)["content"], visual_content).accuracy(1)
                totals["shuffled"] += accuracy.item() * batch_size / shuffles
            speakers = batch["speaker"]
            identity = model.speaker_loss(audio["speaker"].mean(1), visual_speaker[:, steps // 2], speakers=speakers)
            totals["identity"] += identity.accuracy(1).item() * batch_size
            totals["identity_chance"] += identity_chance(speakers) * batch_size
            clips += batch_size
    return {name: total / clips for name, total in totals.items()}


# What a short fit of a tiny SFE on the session shards must reach (a slow test: not robust across seeds; the default
# suite's learning test on the real pipeline is the MDN's in tests/test_mdn.py).
SESSION_FIT = dict(epochs=120, lr=3e-3, steps=8)
SYNC_MARGIN = 0.05  # held-out sync top-1 over the time-shuffled audio's (chance 1/8); see the test's docstring


def short_fit_on_session_shards(shards: Path, seed: int) -> dict[str, float]:
    """A tiny SFE fitted for ``SESSION_FIT["epochs"]`` epochs on the training clips of ``shards`` (one batch of
    all of them, random windows) with ``seed``; its sync top-1 on the held-out clips (the val and test splits, a
    fixed window each) with the true audio and with time-shuffled audio."""
    seed_everything(seed)
    steps = SESSION_FIT["steps"]
    train_clips = len(json.loads((shards / "index.json").read_text())["splits"]["train"])
    data = SFEDataModule(str(shards), steps=steps, batch_size=train_clips, num_workers=0, augment=False, seed=seed)
    model = SFEPretraining(**TINY, lr=SESSION_FIT["lr"])
    trainer = quiet_trainer(max_epochs=SESSION_FIT["epochs"], limit_val_batches=0, log_every_n_steps=10)
    trainer.fit(model, data)
    model.eval()
    held_out = [accuracies(model, data, split) for split in ("val", "test")]
    return {name: sum(result[name] for result in held_out) / len(held_out) for name in ("sync", "shuffled")}


@pytest.mark.slow
def test_a_short_fit_on_the_session_corpus_learns_sync_that_holds_on_held_out_speakers(synthetic_shards):
    """Shards of real photos speaking TTS speech (the session corpus: MediaPipe landmarks, mouth crops, mel
    windows) through SFEDataModule into SFEPretraining: after a short fit on the training speaker's two clips,
    the held-out clips' sync top-1 (val and test splits) beats the same model's with time-shuffled audio by
    SYNC_MARGIN. Not yet robust, so marked slow: seeds 0-4 gave margins 0.087, -0.009, 0.066, -0.163 and 0.041
    (sync 0.203, 0.094, 0.156, 0.031, 0.156); two people in two clips are too little for this fit (issue 24).
    The default suite's learning test on these shards is the MDN's (tests/test_mdn.py), robust over seeds."""
    figures = short_fit_on_session_shards(synthetic_shards, seed=0)
    assert figures["sync"] >= figures["shuffled"] + SYNC_MARGIN, figures


@pytest.mark.slow
def test_fast_pretraining_on_the_embedded_corpus_learns_sync_and_identity(embedded_shards, tmp_path):
    """`make pretrain-sfe FAST=1` on the embedded corpus. On held-out speakers (val and test splits), sync
    top-1 reaches 3x chance and beats the same model given time-shuffled audio. Identity top-1 reaches twice
    the chance its candidates leave (same-speaker clips masked) on the training speakers' clips (fixed windows,
    no augmentation): the embedded corpus pairs each speaker's voice with a face at random, so cross-modal
    identity cannot carry over to unseen speakers."""
    model = fast_fit(tmp_path, "sfe", "fast", "--data.shards", str(embedded_shards)).model.eval()

    steps, batch_size = 8, 8
    data = SFEDataModule(str(embedded_shards), steps=steps, batch_size=batch_size, num_workers=0, augment=False)
    data.setup("fit")
    held_out = [accuracies(model, data, split) for split in ("val", "test")]
    sync = sum(result["sync"] for result in held_out) / 2
    shuffled = sum(result["shuffled"] for result in held_out) / 2
    assert sync >= 3 / steps, f"held-out sync top-1 {sync:.3f} is under 3x chance"
    assert sync >= shuffled + 1 / steps, f"sync top-1 {sync:.3f} vs {shuffled:.3f} with time-shuffled audio"
    training_speakers = accuracies(model, data, "train", shuffles=1)
    identity, chance = training_speakers["identity"], training_speakers["identity_chance"]
    assert identity >= 2 * chance, f"identity top-1 {identity:.3f}, chance {chance:.3f}"


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_fast_fit_on_one_gpu_with_mixed_precision(tmp_path, precision):
    """conf/trainer/gpu.yaml (with 16-mixed as its comment suggests for GPUs without bf16): finite losses, fp32
    weights, and a checkpoint whose hand-off reloads on the CPU and matches the whole module reloaded from it."""
    cli = cli_fit(tmp_path, precision, "--trainer.precision", precision, trainer="trainer/gpu.yaml")
    metrics = json.loads((tmp_path / "sfe" / precision / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * 2
    for name in ("train/loss", "val/loss", "val/sync_loss", "val/speaker_loss"):
        assert math.isfinite(metrics[name]), name
    assert all(parameter.dtype == torch.float32 for parameter in cli.model.parameters())
    last = tmp_path / "sfe" / precision / "checkpoints" / "last.ckpt"
    handoff = load_speech_feature_extractor(last)
    batch = fixed_batch()
    with torch.no_grad():
        expected = SFEPretraining.load_from_checkpoint(last, map_location="cpu").eval()(batch["audio"])["content"]
        torch.testing.assert_close(handoff.net.eval()(batch["audio"])["content"], expected, rtol=0, atol=0)


@pytest.mark.gpu
@needs_cuda
def test_fast_fit_with_ddp_on_every_gpu(tmp_path):
    """conf/trainer/ddp.yaml (all GPUs, synchronised batch norm, bf16-mixed) through `python -m experiments.cli`,
    as `make pretrain-sfe TRAINER=ddp` runs it (Lightning's launcher re-executes the command for each rank)."""
    devices = torch.cuda.device_count()
    clips = ["--data.train_clips", str(16 * devices), "--data.val_clips", str(8 * devices)]  # 2 + 1 batches a rank
    args = [*fast_configs("sfe", "trainer/ddp.yaml"), *SYNTHETIC, *clips]
    epochs = ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1"]
    run = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "fit", *args, *epochs, "--run.root", str(tmp_path)],
        cwd=ROOT,
        timeout=600,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    (run_dir,) = [path for path in (tmp_path / "sfe").iterdir() if path.name != "latest"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * 2, "each rank trains 2 batches of 8 clips per epoch"
    assert math.isfinite(metrics["val/sync_loss"]) and Path(metrics["best_checkpoint"]).is_file()
    assert load_speech_feature_extractor(run_dir / "checkpoints" / "last.ckpt").hparams["step_stride"] == 3
