"""Checkpoint resolution and refusal (lightning_modules/checkpoints.py): a run folder gives one checkpoint, the same
for every command, and a file that is no checkpoint is named with what it holds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_modules.checkpoints import CheckpointError, read_stage_checkpoint, resolve_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = "an SFE checkpoint"


def run_folder(root: Path, best: str | None = "best-epoch=3.ckpt") -> Path:
    """A run folder as the CLI leaves it: ``checkpoints/last.ckpt`` and the best, ``metrics.json`` naming the best
    where it was written (``runs/sfe/first/...``, relative to the working folder of the training)."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "last.ckpt").write_bytes(b"last")
    record = {"last_subcommand": "fit"}
    if best:
        (root / "checkpoints" / best).write_bytes(b"best")
        record["best_checkpoint"] = f"runs/sfe/first/checkpoints/{best}"
    (root / "metrics.json").write_text(json.dumps(record))
    return root


def test_a_moved_run_folder_gives_its_own_best_not_the_file_where_it_was_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = run_folder(tmp_path / "runs" / "sfe" / "first")
    moved = run_folder(tmp_path / "archive" / "first-copy")
    (moved / "checkpoints" / "best-epoch=3.ckpt").write_bytes(b"moved best")
    assert resolve_checkpoint(original) == original / "checkpoints" / "best-epoch=3.ckpt"
    assert resolve_checkpoint(moved).read_bytes() == b"moved best", "the file at the recorded path is another run's"
    monkeypatch.chdir(ROOT)  # from another working folder the recorded relative path points nowhere
    assert resolve_checkpoint(moved).read_bytes() == b"moved best"


def test_a_run_folder_without_a_best_gives_its_last_and_a_file_is_itself(tmp_path):
    run = run_folder(tmp_path / "run", best=None)
    assert resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(run / "checkpoints" / "last.ckpt") == run / "checkpoints" / "last.ckpt"
    (run / "metrics.json").unlink()
    assert resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(("text", "found"), [("{not json", "is not valid JSON"), ("[1, 2]", "holds a list")])
def test_a_corrupt_metrics_json_is_one_sentence_that_says_how_to_recover(tmp_path, text, found):
    run = run_folder(tmp_path / "run")
    (run / "metrics.json").write_text(text)
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint(run)
    message = str(error.value)
    assert found in message and str(run / "metrics.json") in message and "delete it" in message
    assert "\n" not in message


def test_no_checkpoint_is_one_sentence_with_the_remedy(tmp_path):
    with pytest.raises(CheckpointError, match=r"^No SFE checkpoint at .*nothing; train one\.$"):
        resolve_checkpoint(tmp_path / "nothing", "SFE checkpoint", "train one")


def test_the_makefiles_lookup_prints_the_file_or_one_sentence(tmp_path):
    run = run_folder(tmp_path / "run")

    def lookup(path: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "lightning_modules.checkpoints", str(path), "--what", "SFE checkpoint"]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})

    found = lookup(run)
    assert found.returncode == 0 and found.stdout.strip() == str(run / "checkpoints" / "best-epoch=3.ckpt")
    missing = lookup(tmp_path / "absent")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == f"error: No SFE checkpoint at {tmp_path / 'absent'}."


class Whole(torch.nn.Linear):
    """A module pickled whole (``torch.save(model)``), which a weights-only load refuses."""


@pytest.mark.parametrize(
    ("write", "holds"),
    [
        (lambda path: path.write_text("garbage\n"), "8 bytes of text beginning 'garbage'"),
        (lambda path: path.write_bytes(b""), "nothing (an empty file)"),
        (lambda path: path.write_bytes(bytes(range(200, 256))), "56 bytes of data in no PyTorch format"),
        (lambda path: torch.save(Whole(2, 2), path), "Python objects other than tensors"),
    ],
    ids=["text", "empty", "binary", "pickled-model"],
)
def test_a_file_that_is_no_checkpoint_is_named_with_what_it_holds(tmp_path, write, holds):
    path = tmp_path / "sfe.ckpt"
    write(path)
    with pytest.raises(CheckpointError) as error:
        read_stage_checkpoint(path, "sfe", EXPECTED)
    message = str(error.value)
    assert message.startswith(f"Checkpoint {path} cannot be read as a PyTorch checkpoint: it holds {holds}")
    assert message.endswith(f"expected {EXPECTED}.") and "\n" not in message
