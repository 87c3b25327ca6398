"""``make tables``: trains what a table's rows need (reusing finished runs of the same configuration), evaluates
every row on the test split for each seed, and writes ``results/tables/<name>.md``, ``.csv`` and ``.png``.

    python -m experiments.make_tables experiments/tables/ablation.yaml --seeds 3 [--fast]

A run's name is a hash of its whole resolved configuration (what ``experiments.cli fit --print_config`` shows: the
contents of the stage configs, the overrides, the seed, the data, every default), so a rerun finds the runs it made
before (``runs/<stage>/tbl-<hash>``, reused when its ``metrics.json`` says fit finished) and an edited
``conf/*.yaml`` trains anew. ``--data`` is a shards folder or a URL (``s3://bucket/prefix``); the table file and
``conf/`` are found from any working folder (``experiments.cli.project_file``).
"""

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from experiments.cli import RunError, project_file, resolved_config
from experiments.evaluation.columns import (
    COLUMNS,
    MDN_NOT_COMPUTED,
    cell,
    commit,
    mean_metrics,
    not_computed_notes,
)
from experiments.sweep import flag_value
from lightning_modules.checkpoints import resolve_checkpoint

ROW_KEYS = {"name", "label", "sfe", "mdn", "variant"}
VARIANTS = ("model", "static", "truth")


class TableError(ValueError):
    """A table file that cannot be run; the message is one sentence naming the file."""


def read_table(path: str | Path) -> dict:
    """The table file at ``path``, checked: rows with known keys and variants, columns that exist."""
    try:
        path = project_file(path)
    except RunError:
        raise TableError(f"Table file {path} does not exist.") from None
    if not path.is_file():
        raise TableError(f"Table file {path} does not exist.")
    try:
        table = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise TableError(f"Table file {path} is not valid YAML.") from error
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list) or not table["rows"]:
        raise TableError(f"Table file {path} needs a non-empty 'rows' list.")
    for row in table["rows"]:
        unknown = set(row) - ROW_KEYS if isinstance(row, dict) else {"(not a mapping)"}
        if unknown or "name" not in row:
            raise TableError(f"Table file {path}: row {row!r} has unknown keys {sorted(unknown)} or no name.")
        if row.get("variant", "model") not in VARIANTS:
            raise TableError(
                f"Table file {path}: row {row['name']} has variant {row['variant']!r}, not one of {VARIANTS}."
            )
    unknown_columns = [column for column in table.get("columns", []) if column not in COLUMNS]
    if unknown_columns:
        raise TableError(f"Table file {path} names unknown columns {unknown_columns}; known: {list(COLUMNS)}.")
    table.setdefault("columns", list(COLUMNS))
    table.setdefault("name", path.stem)
    return table


class TableRuns:
    """Starts (or finds) the stage runs of a table; every run logs offline under ``root``."""

    def __init__(self, data: str, root: str, fast: bool, trainer: str, extra: list[str] = ()):
        self.data, self.root, self.fast, self.trainer, self.extra = data, Path(root), fast, trainer, list(extra)

    def configs(self, stage: str) -> list[str]:
        """The config files of a ``stage`` run (as ``make <stage>`` passes them), found from any working folder."""
        configs = [project_file("conf/base.yaml"), project_file(f"conf/trainer/{self.trainer}.yaml")]
        configs.append(project_file(f"conf/{stage}.yaml"))
        if self.fast:
            configs.append(project_file("conf/fast.yaml"))
            profile = project_file("conf/fast.yaml").parent / "fast" / f"{stage}.yaml"
            configs += [profile] if profile.is_file() else []
        return [str(config) for config in configs]

    def arguments(self, stage: str, overrides: dict, seed: int) -> list[str]:
        """The ``experiments.cli fit`` arguments of the ``stage`` run with these ``overrides`` and ``seed``, but
        its folder."""
        flags = self.extra + [f"--{key}={flag_value(value)}" for key, value in sorted(overrides.items())]
        arguments = [flag for config in self.configs(stage) for flag in ("--config", config)]
        return [*arguments, f"--seed_everything={seed}", f"--data.init_args.shards={self.data}", *flags]

    def run_name(self, arguments: list[str]) -> str:
        """``tbl-<hash>`` of the whole resolved configuration of a run with ``arguments`` (not of file names)."""
        config = resolved_config(arguments)
        config.pop("run", None)  # where the run is written is not what it is
        return "tbl-" + hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def run(self, stage: str, overrides: dict, seed: int) -> Path:
        """The checkpoint of the ``stage`` run with these ``overrides`` and ``seed``, trained when missing."""
        arguments = self.arguments(stage, overrides, seed)
        name = self.run_name(arguments)
        run_dir = self.root / stage / name
        metrics = run_dir / "metrics.json"
        if not (metrics.is_file() and json.loads(metrics.read_text()).get("last_subcommand") == "fit"):
            command = [sys.executable, "-m", "experiments.cli", "fit", *arguments]
            command += [f"--run.root={self.root}", f"--run.name={name}"]
            print(f"Training {stage} {name} (seed {seed}, {json.dumps(overrides)})", flush=True)
            environment = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
            if subprocess.run(command, env=environment, check=False).returncode != 0:
                raise TableError(f"Training {stage} run {run_dir} failed; its log is above.")
        else:
            print(f"Reusing {stage} run {run_dir}", flush=True)
        return resolve_checkpoint(run_dir, f"{stage} checkpoint")


def evaluate_row(table: dict, row: dict, seed: int, runs: TableRuns, out: Path, options) -> dict:
    """Means of every column for one row and seed (cached beside the table, keyed by the runs it used)."""
    from experiments.evaluation.split import evaluate_split
    from lightning_modules.mdn import load_landmark_mdn
    from lightning_modules.renderer import load_face_renderer
    from lightning_modules.sync_scoring import SFESyncExpert, SyncNetScorer

    variant = row.get("variant", "model")
    renderer_path = runs.run("renderer", {}, seed)
    expert_path = runs.run("sfe", {}, int(table.get("expert_seed", 9001)))
    mdn_path = None
    if variant == "model":
        sfe = row.get("sfe", {})
        sfe_path = None if sfe is None else runs.run("sfe", sfe, seed)
        mdn_overrides = {**row.get("mdn", {}), "model.init_args.sfe_checkpoint": str(sfe_path) if sfe_path else None}
        mdn_path = runs.run("mdn", mdn_overrides, seed)
    clips = evaluated_clips(table, options)
    key = json.dumps(
        [row["name"], variant, str(mdn_path), str(renderer_path), str(expert_path), clips, options.syncnet]
    )
    cache = out / f"{table['name']}-evaluations" / f"{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    print(f"Evaluating row {row['name']} seed {seed}", flush=True)
    items = evaluate_split(
        runs.data,
        variant,
        load_landmark_mdn(mdn_path) if mdn_path else None,
        load_face_renderer(renderer_path),
        "test",
        int(table.get("samples", 5)),
        SyncNetScorer(options.syncnet) if options.syncnet else None,
        SFESyncExpert(expert_path),
        clips,
        options.raw,
    )
    result = {"metrics": mean_metrics(items), "runs": {"mdn": str(mdn_path), "renderer": str(renderer_path)}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


def evaluated_clips(table: dict, options) -> int | None:
    """Test clips evaluated per row and seed: ``--eval-clips``, else the table's (FAST or full) count."""
    return options.eval_clips or table.get("fast_eval_clips" if options.fast else "eval_clips")


def row_notes(row: dict, syncnet: bool) -> dict[str, str]:
    notes = not_computed_notes(syncnet, True)
    if row.get("variant", "model") != "model":
        notes.update(dict.fromkeys(("lmd_mouth_best_of_k", "diversity"), MDN_NOT_COMPUTED))
    return notes


def write_outputs(table: dict, results: dict, header: dict, out: Path, syncnet: bool) -> Path:
    """``<name>.md`` and ``.csv`` (mean +- std over seeds per row and column) and ``<name>.png``."""
    columns, rows = table["columns"], table["rows"]
    stats = {}
    for row in rows:
        per_seed = [result["metrics"] for result in results[row["name"]]]
        for column in columns:
            values = np.array([metrics.get(column, np.nan) for metrics in per_seed], np.float64)
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if len(finite) else float("nan")
            std = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
            stats[row["name"], column] = (mean, std)
    lines = [f"# {table.get('title', table['name'])}", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()] + [""]
    lines.append("| row | " + " | ".join(COLUMNS[column][0] for column in columns) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    csv = ["row,label," + ",".join(f"{column}_mean,{column}_std" for column in columns)]
    for row in rows:
        notes = row_notes(row, syncnet)
        cells, csv_cells = [], []
        for column in columns:
            mean, std = stats[row["name"], column]
            note = notes.get(column) if not np.isfinite(mean) else None
            shown = cell(mean, note)
            if note is None and np.isfinite(std):
                shown += f" ± {std:.2g}"
            cells.append(shown)
            csv_cells += [f"{mean:.6g}" if np.isfinite(mean) else "", f"{std:.6g}" if np.isfinite(std) else ""]
        lines.append(f"| {row.get('label', row['name'])} | " + " | ".join(cells) + " |")
        csv.append(f'{row["name"]},"{row.get("label", row["name"])}",' + ",".join(csv_cells))
    lines += ["", "Columns: " + "; ".join(f"{COLUMNS[column][0]}: {COLUMNS[column][2]}" for column in columns)]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{table['name']}.md").write_text("\n".join(lines) + "\n")
    (out / f"{table['name']}.csv").write_text("\n".join(csv) + "\n")
    figure(table, stats, out / f"{table['name']}.png")
    return out / f"{table['name']}.md"


def figure(table: dict, stats: dict, path: Path) -> None:
    """One bar chart per metric, a bar per row with its std over seeds as error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [
        column
        for column in table["columns"]
        if any(np.isfinite(stats[row["name"], column][0]) for row in table["rows"])
    ]
    width = 4
    rows_of_plots = max(1, int(np.ceil(len(columns) / width)))
    fig, axes = plt.subplots(rows_of_plots, width, figsize=(4 * width, 3.2 * rows_of_plots), squeeze=False)
    names = [row["name"] for row in table["rows"]]
    for axis, column in zip(axes.flat, columns, strict=False):
        means = [stats[name, column][0] for name in names]
        errors = [0.0 if not np.isfinite(stats[name, column][1]) else stats[name, column][1] for name in names]
        axis.bar(range(len(names)), np.nan_to_num(means), yerr=errors, capsize=3, color="tab:blue")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        axis.set_title(COLUMNS[column][0], fontsize=10)
    for axis in list(axes.flat)[len(columns) :]:
        axis.axis("off")
    fig.suptitle(table.get("title", table["name"]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.make_tables", description=__doc__.split("\n")[0])
    parser.add_argument("table", help="table file (experiments/tables/<name>.yaml)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--fast", action="store_true", help="FAST profiles: the embedded corpus in CI-sized time")
    parser.add_argument("--data", default="data/shards/synthetic")
    parser.add_argument("--root", default="runs")
    parser.add_argument("--out", default="results/tables")
    parser.add_argument("--trainer", default="cpu", help="conf/trainer/<name>.yaml for every run")
    parser.add_argument("--syncnet", help="published SyncNet weights (syncnet_v2.model) for LSE-D / LSE-C")
    parser.add_argument("--raw", help="the raw corpus the shards were made from, when it has moved (LSE's audio)")
    parser.add_argument("--eval-clips", type=int, help="test clips per row and seed (default: the table's)")
    parser.add_argument("--args", default="", help="extra LightningCLI flags for every run (part of its identity)")
    options = parser.parse_args(argv)
    from datamodules.shards import ShardsError, raw_corpus, read_index
    from lightning_modules.checkpoints import CheckpointError

    try:
        table = read_table(options.table)
        index = read_index(options.data)
        if options.syncnet:
            raw_corpus(options.data, index, options.raw)  # LSE needs the clips' audio: say so before any training
        runs = TableRuns(options.data, options.root, options.fast, options.trainer, shlex.split(options.args))
        out = Path(options.out)
        results = {row["name"]: [] for row in table["rows"]}
        for seed in range(options.seeds):
            for row in table["rows"]:
                results[row["name"]].append(evaluate_row(table, row, seed, runs, out, options))
    except (TableError, ShardsError, CheckpointError, RunError) as error:
        print(error, file=sys.stderr)
        return 2
    header = {
        "data set": f"{options.data} ({len(index['splits'].get('test', []))} test clips of held-out speakers, a split "
        "that chose nothing (val chose each run's best checkpoint); "
        f"evaluated per row and seed: {evaluated_clips(table, options) or 'all'})",
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seeds": options.seeds,
        "profile": ("FAST (smoke-sized runs)" if options.fast else "full")
        + (f", {options.args}" if options.args else ""),
    }
    path = write_outputs(table, results, header, out, options.syncnet is not None)
    print(path.read_text())
    print(f"Wrote {path}, {path.with_suffix('.csv')} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
