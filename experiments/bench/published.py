"""The published SFE pretraining code (Yaxinzhao97/MACL, ``self_supervised/``), run from a snapshot the user gives,
so that the SFE benchmark can time its training step beside this project's. Nothing of it is in this project: the
snapshot (a git repository, a checkout or an archive) is unpacked into a temporary folder at run time.

Two things are changed at run time, and nothing else: its ``.cuda()`` calls return the tensor unchanged when there
is no GPU, and its top-k accuracy (``.view`` on a non-contiguous tensor, an error in current torch) is computed
with ``.reshape``. Its step is its training loop's: forward (losses and accuracies), ``zero_grad``, ``backward``,
Adam (lr 1e-4, weight decay 1e-4, as its ``train.py``); the model as ``train.py`` builds it (ResNet-18,
bidirectional GRU, memory of 512 slots, dropout 0.5).
"""

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

PACKAGE = "self_supervised"
MODULES = ("model", "backbone", "utils")  # the top-level names its code imports itself by


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the message is one sentence naming it."""


def unpack(snapshot: Path, folder: Path) -> Path:
    """Copies ``snapshot`` (a git repository or bare mirror, a checkout, a .tar/.tar.gz/.zip) into ``folder``;
    returns its ``self_supervised`` folder."""
    if not snapshot.exists():
        raise SnapshotError(
            f"{snapshot} does not exist; give a checkout, git repository or archive of Yaxinzhao97/MACL."
        )
    if snapshot.is_file():
        try:
            shutil.unpack_archive(snapshot, folder)
        except (shutil.ReadError, ValueError) as error:
            raise SnapshotError(f"{snapshot} is not an archive that unpacks ({error}).") from error
    elif (snapshot / PACKAGE).is_dir():
        shutil.copytree(snapshot / PACKAGE, folder / PACKAGE)
    else:
        git_dir = snapshot if (snapshot / "HEAD").is_file() else snapshot / ".git"  # a bare mirror or a checkout
        archive = subprocess.run(
            ["git", "--git-dir", str(git_dir), "archive", "HEAD"], capture_output=True, check=False
        )
        if archive.returncode != 0:
            raise SnapshotError(f"{snapshot} is neither a checkout with {PACKAGE}/ nor a git repository or archive.")
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    found = sorted(folder.glob(f"**/{PACKAGE}/model.py"))
    if not found:
        raise SnapshotError(f"{snapshot} has no {PACKAGE}/model.py; is it a snapshot of Yaxinzhao97/MACL?")
    return found[0].parent


def _top_k_accuracy(output: torch.Tensor, target: torch.Tensor, topk=(1,)) -> list[torch.Tensor]:
    """The published ``calc_topk_accuracy``, with ``.reshape`` where it used ``.view``."""
    _, predicted = output.topk(max(topk), 1, True, True)
    correct = predicted.t().eq(target.view(1, -1).expand_as(predicted.t()))
    return [correct[:k].reshape(-1).float().sum(0) / target.size(0) for k in topk]


@contextlib.contextmanager
def cuda_calls_neutralised() -> Iterator[None]:
    """``Tensor.cuda()`` returns the tensor unchanged while no GPU is available."""
    if torch.cuda.is_available():
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor
    try:
        yield
    finally:
        torch.Tensor.cuda = original


@contextlib.contextmanager
def published_step(snapshot: Path, audio: torch.Tensor, frames: torch.Tensor) -> Iterator[Callable[[], None]]:
    """A function that runs one published training step on ``audio`` ``[B, T, 20, 80]`` and ``frames``
    ``[B, T, 5, 3, 256, 256]`` (this project's layout; the published code takes ``[B, T, 3, 5, H, W]``), valid
    inside the ``with`` block (the snapshot's folder is removed after it)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="macl-published-") as scratch:
        code = unpack(snapshot, Path(scratch))
        saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] in MODULES}
        for name in saved:
            del sys.modules[name]
        sys.path.insert(0, str(code))
        try:
            import model as published  # noqa: PLC0415 (the snapshot's own top-level module)

            published.calc_topk_accuracy = _top_k_accuracy
            torch.manual_seed(0)
            with contextlib.redirect_stdout(None):  # its banner lines
                net = published.MemDPC_BD(is_bidirectional=True, dropout=0.5, network="resnet18", mem_size=512)
            net = net.to(device)
        finally:
            sys.path.remove(str(code))
            for name in [name for name in sys.modules if name.split(".")[0] in MODULES]:
                del sys.modules[name]
            sys.modules.update(saved)
        net.train()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-4)
        audio, frames = audio.to(device), frames.transpose(2, 3).contiguous().to(device)

        def step() -> None:
            with cuda_calls_neutralised():
                loss, _, _ = net(audio, frames)
                optimizer.zero_grad()
                loss.mean().backward()
                optimizer.step()

        yield step
