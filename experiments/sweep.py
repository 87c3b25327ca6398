"""W&B sweeps of a stage's LightningCLI: on the W&B server, or locally through W&B's open-source sweep engine.

A sweep file (``experiments/sweeps/*.yaml``) is in W&B's own format: ``method`` (grid, random, bayes), ``metric``
(``name``, ``goal``), ``parameters`` (dotted LightningCLI keys) and a ``command`` whose ``${args}`` become
``--key=value`` flags.

    python -m experiments.sweep wandb experiments/sweeps/sfe.yaml            # needs `wandb login`
    python -m experiments.sweep local experiments/sweeps/sfe.yaml --count 4  # no server: runs offline

Locally each trial is a run under ``runs/<stage>/<sweep>-<time>-t<i>/`` (W&B offline); the summary
(``runs/sweeps/<sweep>-<time>/summary.json`` and ``.md``) lists every trial and the best trial's parameters,
also as ``best.yaml``, a config to pass to the stage with ``--config``.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import yaml
from jsonschema import ValidationError

from experiments.cli import RunError, project_file, wandb_logged_in

ARGS_MACRO = "${args}"


class SweepError(ValueError):
    """A sweep file that cannot be run; the message is one sentence naming the file."""


def read_sweep(path: str | Path) -> dict:
    """The sweep file at ``path``, checked against W&B's sweep schema; SweepError with one sentence when it is bad."""
    try:
        path = project_file(path)  # experiments/sweeps/... from any working folder
    except RunError:
        raise SweepError(f"Sweep file {path} does not exist.") from None
    if not path.is_file():
        raise SweepError(f"Sweep file {path} does not exist.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise SweepError(f"Sweep file {path} is not valid YAML{where}.") from error
    if not isinstance(config, dict):
        raise SweepError(f"Sweep file {path} must be a mapping with method, metric, parameters and command.")
    for key in ("method", "metric", "parameters", "command"):
        if key not in config:
            raise SweepError(f"Sweep file {path} has no {key!r} entry (a W&B sweep needs method, metric, parameters).")
    command = config["command"]
    if not isinstance(command, list) or ARGS_MACRO not in command:
        raise SweepError(f"Sweep file {path}: 'command' must be a list that contains {ARGS_MACRO}.")
    try:
        _engine().next_run(config, [], validate=True)
    except ValidationError as error:
        reason = "; ".join(line.strip() for line in error.message.splitlines() if line.strip())
        raise SweepError(f"Sweep file {path} is not a valid W&B sweep: {reason}.") from error
    return config


def _engine():
    """W&B's open-source sweep engine (the ``sweeps`` package), imported without its pydantic-v2 config warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import sweeps
    return sweeps


def flag_value(value) -> str:
    """A value as the text of a ``--key=value`` flag: strings as they are, anything else as JSON (``null``, lists)."""
    return value if isinstance(value, str) else json.dumps(value)


def trial_command(config: dict, parameters: dict, extra: list[str]) -> list[str]:
    """The command of one trial: the file's ``command`` with ``extra`` flags inserted before ``${args}`` (so the
    sweep's parameters win over them) and ``${args}`` expanded to ``--key=value``."""
    command = []
    for part in config["command"]:
        if part == "${env}":
            continue
        if part in ("python", "${interpreter}"):
            command.append(sys.executable)
        elif part == "${program}":
            command.append(str(config.get("program", "")))
        elif part == ARGS_MACRO:
            command += extra + [f"--{key}={flag_value(value)}" for key, value in parameters.items()]
        else:
            command.append(str(part))
    return command


def _plain(value):
    """A sweep value as a plain Python number or string (the engine proposes numpy scalars)."""
    return value.item() if hasattr(value, "item") else value


def nested(parameters: dict) -> dict:
    """``{"model.init_args.lr": 1e-3}`` -> ``{"model": {"init_args": {"lr": 1e-3}}}`` (a config file)."""
    tree: dict = {}
    for key, value in parameters.items():
        node = tree
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def fast_flags(config: dict) -> list[str]:
    """FAST=1 for a sweep: ``conf/fast.yaml`` and the FAST profile of the stage config its command names (found
    from any working folder, as ``experiments.cli`` finds the command's own configs)."""
    fast = project_file("conf/fast.yaml")
    stages = [Path(part) for part in config["command"] if str(part).startswith("conf/") and str(part).endswith(".yaml")]
    profiles = [fast.parent / "fast" / stage.name for stage in stages if (fast.parent / "fast" / stage.name).is_file()]
    return ["--config", str(fast), *(flag for profile in profiles for flag in ("--config", str(profile)))]


def _trial_metrics(root: Path, name: str) -> dict:
    found = sorted(root.glob(f"*/{name}/metrics.json"))
    return json.loads(found[0].read_text()) if found else {}


def run_local(path: str | Path, count: int, extra: list[str], root: str = "runs", fast: bool = False) -> Path:
    """Runs up to ``count`` trials of the sweep at ``path`` with no W&B server; returns the summary folder.

    ``extra`` flags (and with ``fast`` the FAST profile) go to every trial, before the swept values.
    """
    sweeps = _engine()
    config = read_sweep(path)
    extra = [*(fast_flags(config) if fast else []), *extra]
    stem = str(config.get("name") or Path(path).stem)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    metric, goal = config["metric"]["name"], config["metric"].get("goal", "minimize")
    summary_dir = Path(root) / "sweeps" / f"{stem}-{stamp}"
    summary_dir.mkdir(parents=True, exist_ok=True)
    history: list = []
    trials = []
    for index in range(count):
        proposal = sweeps.next_run(config, history)
        if proposal is None:
            print(f"The sweep's {config['method']} search has no configuration left after {index} trials.")
            break
        parameters = {key: _plain(entry["value"]) for key, entry in proposal.config.items()}
        name = f"{stem}-{stamp}-t{index}"
        command = trial_command(config, parameters, [f"--run.root={root}", f"--run.name={name}", *extra])
        print(f"Trial {index}: {json.dumps(parameters)}\n  {shlex.join(command)}", flush=True)
        environment = {**os.environ, "WANDB_MODE": "offline"}
        returncode = subprocess.run(command, env=environment, check=False).returncode
        metrics = _trial_metrics(Path(root), name)
        value = metrics.get(metric)
        finished = returncode == 0 and value is not None
        history.append(
            sweeps.SweepRun(
                name=name,
                config=proposal.config,
                state=sweeps.RunState.finished if finished else sweeps.RunState.failed,
                summary_metrics={metric: value} if value is not None else {},
            )
        )
        trials.append({"name": name, "parameters": parameters, metric: value, "exit_code": returncode})
    scored = [trial for trial in trials if trial[metric] is not None]
    best = (min if goal == "minimize" else max)(scored, key=lambda trial: trial[metric]) if scored else None
    summary = {"sweep": str(path), "method": config["method"], "metric": metric, "goal": goal, "trials": trials}
    summary["best"] = best
    (summary_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# Sweep {stem} ({config['method']}, {goal} {metric})", "", f"| trial | parameters | {metric} |"]
    lines.append("|---|---|---|")
    for trial in trials:
        shown = "failed" if trial[metric] is None else f"{trial[metric]:.4g}"
        lines.append(f"| {trial['name']} | {json.dumps(trial['parameters'])} | {shown} |")
    lines += ["", f"Best: {best['name']} with {json.dumps(best['parameters'])}" if best else "Best: no trial finished"]
    (summary_dir / "summary.md").write_text("\n".join(lines) + "\n")
    if best:
        (summary_dir / "best.yaml").write_text(yaml.safe_dump(nested(best["parameters"]), sort_keys=False))
    print(f"Sweep summary: {summary_dir / 'summary.md'}" + (f" (best: {best['name']})" if best else ""))
    return summary_dir


def run_wandb(path: str | Path, count: int | None, project: str) -> int:
    """Creates the sweep on the W&B server and runs an agent on this machine; 1 with one sentence when logged out."""
    config = read_sweep(path)
    if not wandb_logged_in():
        print(
            "make sweep needs a W&B login (`wandb login`, or WANDB_API_KEY); without one, run the same file with "
            f"`make sweep-local SWEEP={path} COUNT=<n>`.",
            file=sys.stderr,
        )
        return 1
    import wandb

    sweep_id = wandb.sweep(config, project=project)
    agent = [sys.executable, "-m", "wandb", "agent", f"{wandb.Api().default_entity}/{project}/{sweep_id}"]
    return subprocess.run(agent + (["--count", str(count)] if count else []), check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("where", choices=["local", "wandb"], help="local: the sweeps engine, no server; wandb")
    parser.add_argument("sweep", help="sweep file (experiments/sweeps/*.yaml)")
    parser.add_argument("--count", type=int, default=None, help="number of trials (local default: 4)")
    parser.add_argument("--root", default="runs", help="folder of the runs (local)")
    parser.add_argument("--project", default="macl", help="W&B project (wandb)")
    parser.add_argument("--fast", action="store_true", help="FAST=1: the stage's FAST profile for every trial (local)")
    parser.add_argument("--args", default="", help="extra LightningCLI flags for every trial (local)")
    options = parser.parse_args(argv)
    try:
        if options.where == "wandb":
            return run_wandb(options.sweep, options.count, options.project)
        run_local(options.sweep, options.count or 4, shlex.split(options.args), options.root, options.fast)
    except (SweepError, RunError) as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
