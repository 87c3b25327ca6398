"""The shared CLI plumbing (experiments/cli.py), driven by the toy module of tests/toy.py."""

import json
from pathlib import Path

import pytest
import torch

from experiments.cli import MACLCLI, main

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TOY = str(ROOT / "tests" / "toy.yaml")
BASE = ["--config", str(CONF / "base.yaml")]


class ParseOnlyCLI(MACLCLI):
    """Parses and validates a config against the classes' signatures without building anything."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def parse(*args: str):
    return ParseOnlyCLI(args=list(args), run=False).config


def stage_configs() -> list[Path]:
    return sorted(path for path in CONF.glob("*.yaml") if path.name not in {"base.yaml", "fast.yaml"})


def preset_configs() -> list[Path]:
    return sorted([CONF / "fast.yaml", *CONF.glob("trainer/*.yaml")])


@pytest.mark.parametrize("preset", preset_configs(), ids=lambda path: str(path.relative_to(CONF)))
def test_every_preset_parses_against_the_trainer_signature(preset):
    config = parse(*BASE, "--config", TOY, "--config", str(preset))
    assert config.model.class_path == "tests.toy.ToyRegression"
    assert config.trainer.logger.class_path.endswith("WandbLogger")


@pytest.mark.parametrize("stage", stage_configs(), ids=lambda path: path.name)
def test_every_stage_config_parses_against_its_classes(stage):
    config = parse(*BASE, "--config", str(stage))
    assert config.run.stage == stage.stem
    assert not config.model.class_path.startswith("tests.")


@pytest.mark.parametrize("stage", stage_configs(), ids=lambda path: path.name)
def test_every_stage_parses_with_its_fast_profile(stage):
    fast = [CONF / "fast.yaml", *([CONF / "fast" / stage.name] if (CONF / "fast" / stage.name).exists() else [])]
    config = parse(*BASE, "--config", str(stage), *[arg for path in fast for arg in ("--config", str(path))])
    assert config.trainer.max_epochs is not None and config.run.stage == stage.stem


def test_every_fast_profile_belongs_to_a_stage():
    stages = {path.name for path in stage_configs()}
    assert {path.name for path in CONF.glob("fast/*.yaml")} <= stages


def fit(tmp_path: Path, name: str, *extra: str):
    main(
        [
            "fit",
            *BASE,
            "--config",
            str(CONF / "trainer" / "cpu.yaml"),
            "--config",
            str(CONF / "fast.yaml"),
            "--config",
            TOY,
            "--run.root",
            str(tmp_path),
            "--run.name",
            name,
            *extra,
        ]
    )
    return tmp_path / "toy" / name


def test_fit_writes_the_run_folder_and_resumes_from_last(tmp_path):
    run_dir = fit(tmp_path, "first")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * 16
    # The targets have unit-scale variance per weight; a learned linear map must beat predicting zero.
    assert metrics["val/loss"] < 0.5
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert Path(metrics["best_checkpoint"]).is_file()
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B should log offline when not logged in"
    assert (tmp_path / "toy" / "latest").resolve() == run_dir.resolve()

    fit(tmp_path, "first", "--trainer.max_epochs", "4")
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["global_step"] == 4 * 16
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4 * 16

    second = fit(tmp_path, "second")
    assert (tmp_path / "toy" / "latest").resolve() == second.resolve()


def test_unknown_config_key_fails_with_lightning_cli_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    hidden_sizez: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        parse(*BASE, "--config", TOY, "--config", str(bad))
    assert exit_info.value.code != 0
    assert "hidden_sizez" in capsys.readouterr().err


def test_unknown_trainer_flag_fails(capsys):
    with pytest.raises(SystemExit):
        parse(*BASE, "--config", TOY, "--trainer.max_epochz", "3")
    assert "max_epochz" in capsys.readouterr().err
