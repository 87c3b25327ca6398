"""The shared CLI plumbing (experiments/cli/), driven by the toy module of tests/toy.py."""

import json
import time
from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace

from experiments.cli import RUN_NAME_ENV, ParseOnlyCLI, RunError, main, run_directory

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TOY = str(ROOT / "tests" / "toy.yaml")
BASE = ["--config", str(CONF / "base.yaml")]


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
    assert Path(metrics["best_checkpoint"]).is_file() and metrics["best_monitor"] == "val/loss"
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B should log offline when not logged in"
    assert (tmp_path / "toy" / "latest").resolve() == run_dir.resolve()

    fit(tmp_path, "first", "--trainer.max_epochs", "4")
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["global_step"] == 4 * 16
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4 * 16

    second = fit(tmp_path, "second")
    assert (tmp_path / "toy" / "latest").resolve() == second.resolve()


def test_resuming_a_run_with_another_model_config_says_what_differs(tmp_path, capsys):
    """Resuming with 4 input features instead of 8 would end in a shape error; the CLI names the keys instead
    (a longer run, the trainer keys, stays resumable: the test above)."""
    run_dir = fit(tmp_path, "first")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path, "first", "--model.init_args.features", "4", "--data.init_args.features", "4",
            "--trainer.max_epochs", "3")  # fmt: skip
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # one line, after any warnings
    assert error.startswith("error: Run ") and ". " not in error, error
    assert "model.init_args.features: 8 -> 4" in error and "data.init_args.features: 8 -> 4" in error, error
    assert "max_epochs" not in error and "--run.name" in error and str(run_dir / "config.yaml") in error, error
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 2 * 16, "the run must be untouched"


def test_last_checkpoint_is_the_newest_state_even_when_the_monitor_did_not_improve(tmp_path):
    """With the best taken as the largest validation loss, only the first epoch is "best"; last.ckpt must still
    hold the end of training, which a rerun of the name resumes from."""
    run_dir = fit(tmp_path, "worsening", "--run.monitor_mode", "max")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert torch.load(metrics["best_checkpoint"], weights_only=False)["global_step"] == 16
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2 * 16


def test_best_checkpoint_follows_run_monitor(tmp_path):
    run_dir = fit(tmp_path, "monitored", "--run.monitor", "train/loss")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_monitor"] == "train/loss"
    callbacks = torch.load(metrics["best_checkpoint"], weights_only=False)["callbacks"]
    assert any("'monitor': 'train/loss'" in key for key in callbacks), list(callbacks)
    assert parse(*BASE, "--config", TOY).run.monitor == "val/loss"
    assert parse(*BASE, "--config", str(CONF / "sfe.yaml")).run.monitor == "val/sync_loss"


def test_the_sfe_step_stride_is_linked_from_the_data():
    config = parse(*BASE, "--config", str(CONF / "sfe.yaml"), "--data.init_args.step_stride", "2")
    assert config.model.init_args.step_stride == 2
    model_only = parse(*BASE, "--config", str(CONF / "sfe.yaml"), "--model.init_args.step_stride", "2")
    assert model_only.model.init_args.step_stride == model_only.data.init_args.step_stride == 3, "the data wins"


LAUNCHES = {
    "slurm": {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2", "SLURM_PROCID": "{rank}"},
    "torchrun": {"TORCHELASTIC_RUN_ID": "f366dd0a-018d-4d14-9d43-49a7145450a9", "WORLD_SIZE": "2", "RANK": "{rank}"},
}
LAUNCH_VARIABLES = {RUN_NAME_ENV, "WORLD_SIZE", "RANK", *(name for launch in LAUNCHES.values() for name in launch)}


def start_process(monkeypatch, launch: dict[str, str], rank: int, clock: str) -> Path:
    """The run folder that a process of ``launch`` started at ``clock`` computes, with its own environment."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in launch.items():
        monkeypatch.setenv(name, value.format(rank=rank))
    monkeypatch.setattr(time, "strftime", lambda *args: clock)
    return run_directory(Namespace(root="runs", stage="sfe", name=None))


@pytest.mark.parametrize("launcher", sorted(LAUNCHES))
def test_unnamed_ranks_started_seconds_apart_agree_on_the_run_folder(monkeypatch, launcher):
    launch = LAUNCHES[launcher]
    first = start_process(monkeypatch, launch, 0, "20260101-120000")
    second = start_process(monkeypatch, launch, 1, "20260101-120001")
    assert first == second and first.parent == Path("runs/sfe")
    other_job = {name: value + "7" if name in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID") else value
                 for name, value in launch.items()}  # fmt: skip
    assert start_process(monkeypatch, other_job, 0, "20260101-120000") != first


def test_an_unnamed_single_process_gets_a_timestamp_and_an_unidentified_launch_is_refused(monkeypatch):
    assert start_process(monkeypatch, {}, 0, "20260101-120000") == Path("runs/sfe/20260101-120000")
    with pytest.raises(RunError, match="--run.name"):
        start_process(monkeypatch, {"WORLD_SIZE": "2", "RANK": "{rank}"}, 0, "20260101-120000")


@pytest.mark.parametrize(
    ("flags", "yaml_text", "line"),
    [
        (
            [],
            "model:\n  init_args:\n    featurs: 3\n",
            "model.init_args.featurs (did you mean model.init_args.features?)",
        ),
        ([], "trainr:\n  max_epochs: 3\n", "trainr.max_epochs (did you mean trainer.max_epochs?)"),
        (["--trainer.max_epochz", "3"], None, "trainer.max_epochz (did you mean trainer.max_epochs?)"),
        (
            ["--data.init_args.batch_sise", "3"],
            None,
            "data.init_args.batch_sise (did you mean data.init_args.batch_size?)",
        ),
    ],
    ids=["model-key-in-a-file", "group-in-a-file", "trainer-flag", "data-flag"],
)
def test_a_misspelled_config_key_is_one_line_with_the_closest_valid_key(tmp_path, capsys, flags, yaml_text, line):
    if yaml_text is not None:
        (tmp_path / "bad.yaml").write_text(yaml_text)
        flags = ["--config", str(tmp_path / "bad.yaml")]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *BASE, "--config", TOY, *flags, "--run.root", str(tmp_path / "runs")])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error == f"error: Unknown config key {line}; `python -m experiments.cli fit --help` lists every key.", error
    assert not (tmp_path / "runs").exists()


def test_a_value_of_the_wrong_type_names_its_key_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *BASE, "--config", TOY, "--model.init_args.lr", "fast", "--run.root", str(tmp_path)])
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: Config key model.init_args.lr cannot take its value (") and "\n" not in error
    assert "fast" in error and "usage" not in error


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *BASE, "--config", TOY, "--help"])
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_unknown_trainer_flag_fails(capsys):
    with pytest.raises(SystemExit):
        parse(*BASE, "--config", TOY, "--trainer.max_epochz", "3")
    assert "max_epochz" in capsys.readouterr().err


def test_the_stage_configs_are_found_from_any_working_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fit_args = ["fit", "--config", "conf/base.yaml", "--config", "conf/trainer/cpu.yaml", "--config", "conf/fast.yaml"]
    main([*fit_args, "--config", TOY, "--run.root", str(tmp_path / "runs"), "--run.name", "elsewhere"])
    assert (tmp_path / "runs" / "toy" / "elsewhere" / "metrics.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "conf/nothing.yaml", "--config", TOY, "--run.root", str(tmp_path / "runs")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 1 and error.startswith("error: conf/nothing.yaml is neither in the working folder")


def test_a_bad_sfe_checkpoint_is_one_sentence_and_leaves_no_run_folder(synthetic_shards, tmp_path, capsys):
    bad = tmp_path / "sfe.ckpt"
    bad.write_text("garbage\n")
    stage = ["--config", str(CONF / "trainer" / "cpu.yaml"), "--config", str(CONF / "mdn.yaml")]
    arguments = ["fit", *BASE, *stage, "--data.shards", str(synthetic_shards), "--run.root", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--model.init_args.sfe_checkpoint", str(bad)])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        f"error: Checkpoint {bad} cannot be read as a PyTorch checkpoint: it holds 8 bytes of text beginning "
        "'garbage'; expected an SFE checkpoint (written by lightning_modules.sfe.SFEPretraining)."
    ), error
    assert not (tmp_path / "runs").exists()


def test_a_stage_that_cannot_start_leaves_no_run_folder(synthetic_shards, tmp_path, capsys):
    """Too few training clips for the batch size: the run fails as training starts, after the logger and the
    checkpoint callback were made; the folder that they began goes with it, a run that trained keeps its own."""
    stage = ["--config", str(CONF / "trainer" / "cpu.yaml"), "--config", str(CONF / "sfe.yaml")]
    arguments = ["fit", *BASE, *stage, "--config", str(CONF / "fast.yaml"), "--data.shards", str(synthetic_shards)]
    arguments += ["--data.init_args.batch_size", "64", "--run.root", str(tmp_path / "runs"), "--run.name", "big"]
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 1
    assert "fewer than batch_size 64" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "runs" / "sfe" / "big").exists()
