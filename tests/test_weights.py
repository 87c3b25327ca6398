"""The shipped default models (experiments/weights.py) and generation's fall-back to them (experiments/generate.py)."""

import json
import shutil

import pytest
import torch

from experiments import generate as generation
from experiments import weights
from lightning_modules.checkpoints import CheckpointError
from lightning_modules.mdn import load_landmark_mdn
from lightning_modules.renderer import load_face_renderer


def test_shipping_keeps_what_generation_loads_and_drops_the_optimiser(tiny_runs, tmp_path):
    out = tmp_path / "weights"
    tiny_runs = {stage: shutil.copytree(run, tmp_path / "runs" / stage) for stage, run in tiny_runs.items()}
    for stage in ("mdn", "renderer"):
        full = torch.load(tiny_runs[stage] / "checkpoints" / "last.ckpt", weights_only=True)
        full["optimizer_states"] = [{"state": {0: {"exp_avg": torch.zeros(1000)}}}]
        torch.save(full, tiny_runs[stage] / "checkpoints" / "last.ckpt")
        (tiny_runs[stage] / "metrics.json").write_text(json.dumps({"val/psnr_mouth": 20.5}))
    assert weights.main(["--mdn", str(tiny_runs["mdn"]), "--renderer", str(tiny_runs["renderer"]),
                         "--out", str(out)]) == 0  # fmt: skip
    shipped = torch.load(out / "mdn.ckpt", weights_only=True)
    assert "optimizer_states" not in shipped and "state_dict" in shipped
    mdn, renderer = load_landmark_mdn(out / "mdn.ckpt"), load_face_renderer(out / "renderer.ckpt")
    originals = (load_landmark_mdn(tiny_runs["mdn"] / "checkpoints" / "last.ckpt"),
                 load_face_renderer(tiny_runs["renderer"] / "checkpoints" / "last.ckpt"))  # fmt: skip
    for shipped_model, original in zip((mdn, renderer), originals, strict=True):
        for name, value in original.state_dict().items():
            assert torch.equal(shipped_model.state_dict()[name], value), name
    record = json.loads((out / "renderer.metrics.json").read_text())
    assert record["metrics"] == {"val/psnr_mouth": 20.5} and record["source_checkpoint"] == "last.ckpt"


def test_one_stage_ships_alone_and_none_is_refused(tiny_runs, tmp_path):
    out = tmp_path / "weights"
    assert weights.main(["--renderer", str(tiny_runs["renderer"]), "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["renderer.ckpt", "renderer.metrics.json"]
    with pytest.raises(SystemExit):
        weights.main(["--out", str(out)])


def test_a_missing_run_is_one_sentence(tmp_path, capsys):
    assert weights.main(["--mdn", str(tmp_path / "none"), "--renderer", str(tmp_path), "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(tmp_path / "none") in error[0]


def test_generation_falls_back_to_the_shipped_models_for_the_default_run_unless_it_is_your_own(tmp_path, monkeypatch):
    shipped = tmp_path / "repository" / "weights"
    shipped.mkdir(parents=True)
    for stage in ("mdn", "renderer"):
        (shipped / f"{stage}.ckpt").write_bytes(b"")
    monkeypatch.setattr(weights, "SHIPPED", shipped)
    monkeypatch.chdir(tmp_path)
    assert generation.resolve_checkpoint("runs/mdn/latest", "mdn") == shipped / "mdn.ckpt"
    assert generation.resolve_checkpoint("runs/renderer/latest", "renderer") == shipped / "renderer.ckpt"
    with pytest.raises(CheckpointError, match="make train-mdn"):
        generation.resolve_checkpoint("runs/mdn/mine", "mdn")
    for run in ("demo", "mine"):
        (tmp_path / "runs" / "mdn" / run / "checkpoints").mkdir(parents=True)
        (tmp_path / "runs" / "mdn" / run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (tmp_path / "runs" / "mdn" / "latest").symlink_to("demo", target_is_directory=True)
    assert generation.resolve_checkpoint("runs/mdn/latest", "mdn") == shipped / "mdn.ckpt", "make demo's smoke run"
    assert generation.resolve_checkpoint("runs/mdn/demo", "mdn").resolve().parent.parent.name == "demo", "asked for"
    (tmp_path / "runs" / "mdn" / "latest").unlink()
    (tmp_path / "runs" / "mdn" / "latest").symlink_to("mine", target_is_directory=True)
    own = tmp_path / "runs" / "mdn" / "mine" / "checkpoints" / "last.ckpt"
    assert generation.resolve_checkpoint("runs/mdn/latest", "mdn").resolve() == own, "yours wins"
