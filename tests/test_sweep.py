"""W&B sweep files and the local sweep runner (W&B's open-source sweep engine, no server)."""

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from experiments.cli import main as cli_main
from experiments.sweep import SweepError, _engine, main, read_sweep, run_local, trial_command

SWEEPS = sorted(Path("experiments/sweeps").glob("*.yaml"))


def test_there_are_sweeps_for_the_sfe_and_the_mdn():
    parameters = {path.stem: set(read_sweep(path)["parameters"]) for path in SWEEPS}
    assert {"model.init_args.memory_slots", "model.init_args.lr"} <= parameters["sfe"]
    assert {"model.init_args.components", "model.init_args.dirichlet_weight"} <= parameters["mdn"]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda path: path.stem)
def test_sweep_file_configures_its_stage(path):
    """A proposed trial's command parses with the stage's LightningCLI and sets every swept value."""
    config = read_sweep(path)
    proposal = _engine().next_run(config, [])
    parameters = {key: entry["value"] for key, entry in proposal.config.items()}
    command = trial_command(config, parameters, [])
    assert command[1:4] == ["-m", "experiments.cli", "fit"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_info:
        cli_main([*command[3:], "--print_config"])
    assert exit_info.value.code in (0, None)
    resolved = yaml.safe_load(printed.getvalue())
    for key, value in parameters.items():
        node = resolved
        for part in key.split("."):
            node = node[part]
        assert node == pytest.approx(value)


def test_fast_adds_the_stage_profile():
    from experiments.sweep import fast_flags

    flags = fast_flags(read_sweep("experiments/sweeps/sfe.yaml"))
    assert flags == ["--config", "conf/fast.yaml", "--config", "conf/fast/sfe.yaml"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("method: [\n", "is not valid YAML at line 2"),
        ("method: random\nmetric: {name: val/loss}\ncommand: [python, '${args}']\n", "has no 'parameters' entry"),
        (
            "method: rand\nmetric: {name: m}\nparameters: {lr: {values: [1]}}\ncommand: [python, '${args}']\n",
            "not a valid W&B sweep: 'rand' is not one of",
        ),
        ("method: grid\nmetric: {name: m}\nparameters: {lr: {values: [1]}}\ncommand: [python]\n", "${args}"),
    ],
)
def test_malformed_sweep_file_ends_with_one_sentence(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SweepError, match=None) as error:
        read_sweep(path)
    assert message in str(error.value) and str(path) in str(error.value)
    assert main(["local", str(path), "--count", "1"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


TINY_TRIAL = (
    "--config conf/trainer/cpu.yaml --trainer.max_epochs 1 "
    "--trainer.limit_train_batches 1 --trainer.limit_val_batches 1 --trainer.check_val_every_n_epoch 1 "
    "--data.init_args.num_workers 0"
)


@pytest.mark.slow
def test_local_sweep_runs_two_trials_and_writes_the_summary(embedded_shards, tmp_path):
    summary_dir = run_local(
        "experiments/sweeps/sfe.yaml",
        2,
        [*TINY_TRIAL.split(), f"--data.init_args.shards={embedded_shards}"],
        str(tmp_path),
    )
    summary = json.loads((summary_dir / "summary.json").read_text())
    trials = summary["trials"]
    assert len(trials) == 2 and all(trial["exit_code"] == 0 for trial in trials)
    assert trials[0]["parameters"] != trials[1]["parameters"]
    assert all(trial["val/loss"] is not None for trial in trials)
    for trial in trials:
        resolved = yaml.safe_load(next(tmp_path.glob(f"sfe/{trial['name']}/config.yaml")).read_text())
        assert resolved["model"]["init_args"]["lr"] == pytest.approx(trial["parameters"]["model.init_args.lr"])
    best = yaml.safe_load((summary_dir / "best.yaml").read_text())
    assert best["model"]["init_args"]["lr"] == pytest.approx(summary["best"]["parameters"]["model.init_args.lr"])
    assert "Best:" in (summary_dir / "summary.md").read_text()


def test_a_sweep_file_and_its_fast_profiles_are_found_from_any_working_folder(tmp_path, monkeypatch):
    from experiments.sweep import fast_flags

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    flags = fast_flags(read_sweep("experiments/sweeps/sfe.yaml"))
    assert flags == ["--config", str(root / "conf" / "fast.yaml"), "--config", str(root / "conf" / "fast" / "sfe.yaml")]
