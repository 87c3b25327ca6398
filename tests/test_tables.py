"""make tables: table files checked against the stage configs they override; outputs from per-seed results."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from experiments.cli import RunError
from experiments.cli import main as cli_main
from experiments.make_tables import TableError, TableRuns, main, read_table, write_outputs
from lightning_modules.sync_scoring import SYNCNET_NOT_COMPUTED

ROOT = Path(__file__).resolve().parents[1]
TABLES = sorted((ROOT / "experiments" / "tables").glob("*.yaml"))


def _resolved(stage: str, overrides: dict) -> dict:
    flags = [f"--{key}={json.dumps(value)}" for key, value in overrides.items()]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", "conf/base.yaml", "--config", f"conf/{stage}.yaml", *flags, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(printed.getvalue())


@pytest.mark.parametrize("path", TABLES, ids=lambda path: path.stem)
def test_table_rows_configure_their_stages(path):
    table = read_table(path)
    for row in table["rows"]:
        for stage in ("sfe", "mdn"):
            overrides = row.get(stage) or {}
            resolved = _resolved(stage, overrides)
            for key, value in overrides.items():
                node = resolved
                for part in key.split("."):
                    node = node[part]
                assert node == value, f"{row['name']}: {stage} {key}"


def test_ablation_has_the_papers_rows():
    table = read_table("experiments/tables/ablation.yaml")
    rows = {row["name"]: row for row in table["rows"]}
    assert set(rows) == {"full", "no-memory", "no-pretraining", "m1", "static", "truth"}
    assert rows["no-memory"]["sfe"] == {"model.init_args.memory": False}
    assert rows["no-pretraining"]["sfe"] is None
    assert rows["m1"]["mdn"] == {"model.init_args.components": 1}
    assert rows["static"]["variant"] == "static" and rows["truth"]["variant"] == "truth"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rows: []\n", "needs a non-empty 'rows' list"),
        ("rows: [{name: a, variant: dream}]\n", "variant 'dream'"),
        ("rows: [{name: a, sfee: {}}]\n", "unknown keys ['sfee']"),
        ("rows: [{name: a}]\ncolumns: [fid]\n", "unknown columns ['fid']"),
    ],
)
def test_bad_table_file_ends_with_one_sentence(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TableError) as error:
        read_table(path)
    assert message in str(error.value)
    assert main([str(path)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_outputs_give_mean_and_std_over_seeds_and_say_what_was_not_computed(tmp_path):
    table = {
        "name": "t",
        "rows": [{"name": "full", "label": "Full", "variant": "model"}, {"name": "static", "variant": "static"}],
        "columns": ["lmd_mouth", "diversity", "lse_d"],
    }
    results = {
        "full": [{"metrics": {"lmd_mouth": 1.0, "diversity": 0.2}}, {"metrics": {"lmd_mouth": 3.0, "diversity": 0.4}}],
        "static": [{"metrics": {"lmd_mouth": 5.0}}, {"metrics": {"lmd_mouth": 5.0}}],
    }
    header = {"data set": "shards", "commit": "abc", "date": "today", "seeds": 2}
    markdown = write_outputs(table, results, header, tmp_path, syncnet=False).read_text()
    assert "| Full | 2 ± 1.4 | 0.3 ± 0.14 | " + SYNCNET_NOT_COMPUTED in markdown
    assert "| static | 5 ± 0 | not computed (needs an MDN checkpoint) |" in markdown
    assert "- commit: abc" in markdown and "- data set: shards" in markdown
    csv = (tmp_path / "t.csv").read_text().splitlines()
    assert csv[0].startswith("row,label,lmd_mouth_mean,lmd_mouth_std") and csv[1].startswith('full,"Full",2,1.41421')
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_a_run_is_named_by_its_resolved_config_so_an_edited_conf_trains_anew(tmp_path, monkeypatch):
    runs = TableRuns("data/shards/synthetic", str(tmp_path / "runs"), fast=False, trainer="cpu")

    def name(overrides: dict | None = None, seed: int = 0) -> str:
        return runs.run_name(runs.arguments("sfe", overrides or {}, seed))

    first = name()
    assert first.startswith("tbl-") and name() == first
    assert len({first, name(seed=1), name({"model.init_args.memory": False})}) == 3
    edited = tmp_path / "edited"
    shutil.copytree(ROOT / "conf", edited / "conf")
    monkeypatch.chdir(edited)  # the same file names, found in the working folder
    sfe = edited / "conf" / "sfe.yaml"
    sfe.write_text(sfe.read_text() + "# a comment changes nothing that is run\n")
    assert name() == first
    sfe.write_text(sfe.read_text().replace("    lr: 1.0e-4", "    lr: 3.0e-4"))
    assert name() != first, "an edited conf/sfe.yaml must not reuse the runs of the old one"


def test_a_misspelled_override_of_a_row_is_one_sentence_before_any_training(tmp_path):
    runs = TableRuns("data/shards/synthetic", str(tmp_path / "runs"), fast=False, trainer="cpu")
    with pytest.raises(RunError) as error:
        runs.run("sfe", {"model.init_args.memroy": False}, 0)
    assert str(error.value).startswith(
        "Unknown config key model.init_args.memroy (did you mean model.init_args.memory?)"
    )
    assert not (tmp_path / "runs").exists()


def test_tables_and_their_configs_are_found_from_any_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert read_table("experiments/tables/ablation.yaml")["name"] == "ablation"
    configs = TableRuns("data", "runs", fast=True, trainer="cpu").configs("mdn")
    assert [Path(config).relative_to(ROOT).as_posix() for config in configs] == [
        "conf/base.yaml", "conf/trainer/cpu.yaml", "conf/mdn.yaml", "conf/fast.yaml", "conf/fast/mdn.yaml"
    ]  # fmt: skip
    with pytest.raises(TableError, match="Table file experiments/tables/nothing.yaml does not exist"):
        read_table("experiments/tables/nothing.yaml")


SMOKE = (
    "--trainer.max_epochs=2 --trainer.limit_train_batches=2 --trainer.limit_val_batches=1 "
    "--trainer.check_val_every_n_epoch=1"
)


@pytest.mark.slow
def test_ablation_table_fills_every_cell_and_a_rerun_reuses_the_runs(embedded_shards, tmp_path, capsys):
    arguments = ["experiments/tables/ablation.yaml", "--seeds", "1", "--fast", "--data", str(embedded_shards)]
    arguments += ["--root", str(tmp_path / "runs"), "--out", str(tmp_path / "tables"), "--eval-clips", "2"]
    assert main([*arguments, "--args", SMOKE]) == 0
    markdown = (tmp_path / "tables" / "ablation.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| row")]
    assert len(rows) == 6
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
        assert len(cells) == 13 and all(cell and cell != "n/a" for cell in cells), row
    assert SYNCNET_NOT_COMPUTED in markdown
    runs = sorted(path.name for path in (tmp_path / "runs").glob("*/tbl-*"))
    capsys.readouterr()
    assert main([*arguments, "--args", SMOKE]) == 0
    assert "Training" not in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "runs").glob("*/tbl-*")) == runs
