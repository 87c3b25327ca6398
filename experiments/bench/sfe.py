"""SFE pretraining speed: this project's training step beside the published code's, at the published input
(batch 4 clips x T = 8 steps x 5 frames of 256x256, fp32) and at the default 96x96 mouth crops, timed in one run
in alternating rounds; then bf16-mixed, the sync loss, and the GPU rows when there is a GPU.

A step is forward, loss, backward and Adam on a batch held in memory (data loading is not measured; Lightning's
logging is left out), after one warm-up step per variant. The model is ``conf/sfe.yaml``'s (a half-width ResNet-18
trunk, channels-last), beside the same model at the published trunk width and, as "before", at the published
width encoding every stack slot. The batch's stacks overlap as the DataModule's do (one every 3rd frame of a clip:
26 distinct frames per clip, 40 slots), so this project's encoder encodes each distinct frame once. The published step
(:mod:`experiments.bench.published`) needs ``make bench PUBLISHED=<snapshot of Yaxinzhao97/MACL>``.
"""

import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext

import torch
import torch.nn.functional as F
import yaml
from torch.utils import benchmark

from experiments.bench import Options
from experiments.bench.published import published_step
from experiments.bench.report import Row, at_least
from experiments.cli import project_file
from lightning_modules.losses import ScaledCosine, SyncInfoNCE
from lightning_modules.sfe import SFEPretraining

BATCH, STEPS, FRAMES, STRIDE, FEATURES = 4, 8, 5, 3, 128
TIMED_ROUNDS = 2
FACE, MOUTH = 256, 96
PUBLISHED_WIDTH = 64  # the published trunk: ResNet-18 at its full width
GOALS = {"face": at_least(5), "mouth": at_least(20)}  # speed-up over the published step (issue 23)


def overlapping_batch(image_size: int, seed: int = 0) -> dict:
    """A stage-1 batch whose stacks overlap as the DataModule's: ``frames`` ``[B, T, 5, 3, S, S]`` cut from
    random clips of ``STRIDE * (T - 1) + 5`` frames."""
    generator = torch.Generator().manual_seed(seed)
    clips = torch.rand(BATCH, STRIDE * (STEPS - 1) + FRAMES, 3, image_size, image_size, generator=generator)
    positions = STRIDE * torch.arange(STEPS)[:, None] + torch.arange(FRAMES)[None, :]
    return {
        "audio": torch.rand(BATCH, STEPS, 20, 80, generator=generator),
        "frames": clips[:, positions],
        "speaker": torch.arange(BATCH),
    }


def default_arguments() -> dict:
    """Stage 1's model arguments as ``conf/sfe.yaml`` sets them (what ``make pretrain-sfe`` trains)."""
    return yaml.safe_load(project_file("conf/sfe.yaml").read_text())["model"]["init_args"]


def default_model(**overrides) -> SFEPretraining:
    """Stage 1's model as ``conf/sfe.yaml`` configures it, with ``overrides``."""
    return SFEPretraining(**{**default_arguments(), "step_stride": STRIDE, **overrides})


def our_step(batch: dict, deduplicate: bool = True, precision: str = "32-true", **overrides) -> Callable[[], None]:
    """One training step of the default ``SFEPretraining`` with ``overrides`` (``training_step``, backward,
    Adam)."""
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = default_model(**overrides).to(device).train()
    if not deduplicate:
        model.visual.step_stride = None
    model.log = model.log_dict = lambda *args, **kwargs: None  # no Trainer: the figures are the model's work
    model.trainer = type("OneDevice", (), {"world_size": 1})()
    optimizer = model.configure_optimizers()
    batch = {name: value.to(device) for name, value in batch.items()}
    autocast = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()

    def step() -> None:
        with autocast:
            loss = model.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def seconds(step: Callable[[], None]) -> tuple[float, float]:
    """Wall and CPU seconds (this process's threads) of one step."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    began, began_cpu = time.perf_counter(), time.process_time()
    step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - began, time.process_time() - began_cpu


def side_by_side(steps: dict[str, Callable[[], None]], rounds: int = TIMED_ROUNDS) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds per step of each variant: one warm-up step each, then ``rounds`` rounds of one
    step each, the variants alternating, so a change in the machine's load falls on all of them alike."""
    for step in steps.values():
        step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(seconds(step))
    return {
        name: tuple(statistics.median(kind) for kind in zip(*values, strict=True)) for name, values in times.items()
    }


def ratios(slower: tuple[float, float], faster: tuple[float, float]) -> dict:
    """A speed-up row's ``value``, ``unit`` and ``note``: the wall-time ratio, with the CPU-time ratio in the note."""
    return {"value": slower[0] / faster[0], "unit": "x", "note": f"{slower[1] / faster[1]:.3g}x in CPU time"}


VARIANTS = {  # name: (label, our_step's arguments); the default's label gets conf/sfe.yaml's visual_width
    "default": ("the default (conf/sfe.yaml: visual_width {width})", {}),
    "published width": ("the published trunk width (visual_width 64)", {"visual_width": PUBLISHED_WIDTH}),
    "before": (
        "before: the published width, every slot encoded",
        {"visual_width": PUBLISHED_WIDTH, "deduplicate": False},
    ),
}


def training_rows(options: Options) -> list[Row]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batches = {"face": overlapping_batch(FACE), "mouth": overlapping_batch(MOUTH)}
    rows = []
    with ExitStack() as stack:
        steps = {(size, variant): our_step(batch, **arguments)
                 for size, batch in batches.items() for variant, (_, arguments) in VARIANTS.items()}  # fmt: skip
        if options.published is not None:
            audio, frames = batches["face"]["audio"], batches["face"]["frames"]
            steps["published"] = stack.enter_context(published_step(options.published, audio, frames))
        timed = side_by_side(steps)
    if "published" in timed:
        rows.append(Row(f"published SFE training step ({device}, fp32), 256x256 whole faces", timed["published"][0],
                        "s/step", note=f"{timed['published'][1]:.3g} CPU s; Yaxinzhao97/MACL"))  # fmt: skip
    default_width = default_arguments()["visual_width"]
    for size, pixels in (("face", FACE), ("mouth", MOUTH)):
        input_label = f"{pixels}x{pixels} {'whole faces (the published input)' if size == 'face' else 'mouth crops'}"
        for variant, (label, _) in VARIANTS.items():
            wall, cpu = timed[size, variant]
            label = label.format(width=default_width)
            rows.append(Row(f"SFE training step ({device}, fp32), {input_label}, {label}", wall, "s/step",
                            note=f"{cpu:.3g} CPU s"))  # fmt: skip
        rows.append(Row(f"speed-up of the default over before, {input_label}",
                        **ratios(timed[size, "before"], timed[size, "default"])))  # fmt: skip
        ratio_name = f"speed-up over the published step (256x256 faces), the default at {input_label}"
        if "published" in timed:
            rows.append(Row(ratio_name, **ratios(timed["published"], timed[size, "default"]), goal=GOALS[size]))
        else:
            reason = "no snapshot of the published code (make bench PUBLISHED=<Yaxinzhao97/MACL checkout or archive>)"
            rows.append(Row.not_measured(ratio_name, "x", reason, GOALS[size]))
    return rows


def mixed_precision_rows() -> list[Row]:
    """bf16-mixed on this device; bf16-mixed and 16-mixed on a GPU (not measured without one)."""
    mouth = overlapping_batch(MOUTH)
    rows = []
    if not torch.cuda.is_available():
        timed = side_by_side({"bf16": our_step(mouth, precision="bf16-mixed")}, rounds=1)
        rows.append(Row("SFE training step (cpu, bf16-mixed), 96x96 mouth crops", timed["bf16"][0], "s/step"))
        for precision in ("bf16-mixed", "16-mixed"):
            rows.append(Row.not_measured(f"SFE training steps (GPU, {precision}), 256x256 faces", "steps/s", "no GPU"))
    else:
        for size in (FACE, MOUTH):
            batch = overlapping_batch(size)
            timed = side_by_side({"bf16-mixed": our_step(batch, precision="bf16-mixed"),
                                  "16-mixed": _float16_step(batch)}, rounds=3)  # fmt: skip
            for precision, (wall, _) in timed.items():
                rows.append(Row(f"SFE training steps (GPU, {precision}), {size}x{size}", 1 / wall, "steps/s"))
    rows.append(Row.not_measured("SFE training, DDP across processes on one node", "steps/s",
                                 "not part of this benchmark yet (tests/sfe_ddp.py runs 2 CPU processes)"))  # fmt: skip
    return rows


def _float16_step(batch: dict) -> Callable[[], None]:
    """``16-mixed`` on a GPU: float16 autocast with a gradient scaler, as Lightning's precision plugin."""
    torch.manual_seed(0)
    model = default_model().cuda().train()
    model.log = model.log_dict = lambda *args, **kwargs: None
    model.trainer = type("OneDevice", (), {"world_size": 1})()
    optimizer, scaler = model.configure_optimizers(), torch.amp.GradScaler("cuda")
    batch = {name: value.cuda() for name, value in batch.items()}

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model.training_step(batch, 0)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def per_clip_sync_loss(similarity: ScaledCosine, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """The sync loss as a Python loop over clips: the reference the vectorised loss is timed against."""
    targets = torch.arange(audio.shape[1])
    return torch.stack([F.cross_entropy(similarity(a, v), targets) for a, v in zip(audio, visual, strict=True)]).mean()


def sync_loss_rows() -> list[Row]:
    rows = []
    for batch in (BATCH, 64):
        loss = SyncInfoNCE()
        audio = torch.randn(batch, STEPS, FEATURES, requires_grad=True)
        visual = torch.randn(batch, STEPS, FEATURES, requires_grad=True)
        milliseconds = {}
        statements = {"vectorised": "loss(audio, visual).loss.backward()",
                      "per-clip loop": "per_clip_sync_loss(loss.similarity, audio, visual).backward()"}  # fmt: skip
        for kind, statement in statements.items():
            timer = benchmark.Timer(statement, num_threads=torch.get_num_threads(), globals={
                "loss": loss, "audio": audio, "visual": visual, "per_clip_sync_loss": per_clip_sync_loss})  # fmt: skip
            milliseconds[kind] = timer.blocked_autorange(min_run_time=1.0).median * 1e3
            rows.append(Row(f"sync loss forward+backward, {kind}, B={batch} T={STEPS}", milliseconds[kind], "ms"))
        rows.append(Row(f"sync loss speed-up of the vectorised loss, B={batch}",
                        milliseconds["per-clip loop"] / milliseconds["vectorised"], "x"))  # fmt: skip
    return rows


def run(options: Options) -> list[Row]:
    return training_rows(options) + mixed_precision_rows() + sync_loss_rows()
