"""The benchmark report: rows with a goal, the machine they ran on, and one report per machine
(``results/bench/<machine>.md`` and ``.json``) that each run of ``make bench`` updates section by section.

A benchmark returns :class:`Row` s: what was measured (``name``, with its input), ``value`` and ``unit``, and the
``goal`` the figure must reach, if it has one; a figure that could not be measured here has ``value=None`` and a
``note`` that says why (``Row.not_measured``).
"""

import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch

RESULTS_DIR = Path("results/bench")
VERSIONED_PACKAGES = (  # besides python and torch (named with its build, +cu130 or +cpu)
    "torchvision",
    "lightning",
    "numpy",
    "mediapipe",
    "opencv-contrib-python",
    "imageio-ffmpeg",
    "onnxruntime",
)


@dataclass(frozen=True)
class Goal:
    """What a figure must reach: at least ``target`` (``at_least=True``) or at most ``target``."""

    target: float
    at_least: bool = True

    def met(self, value: float) -> bool:
        return value >= self.target if self.at_least else value <= self.target

    def __str__(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.target:g}"


def at_least(target: float) -> Goal:
    return Goal(target, at_least=True)


def at_most(target: float) -> Goal:
    return Goal(target, at_least=False)


@dataclass(frozen=True)
class Row:
    """One figure of a benchmark: ``value`` in ``unit`` (None when it was not measured: ``note`` says why)."""

    name: str
    value: float | None
    unit: str
    goal: Goal | None = None
    note: str = ""

    @classmethod
    def not_measured(cls, name: str, unit: str, reason: str, goal: Goal | None = None) -> "Row":
        return cls(name, None, unit, goal, f"not measured: {reason}")

    @property
    def status(self) -> str:
        """``met``, ``NOT MET``, ``not measured`` or empty (a figure without a goal)."""
        if self.value is None:
            return "not measured"
        if self.goal is None:
            return ""
        return "met" if self.goal.met(self.value) else "NOT MET"

    def as_dict(self) -> dict:
        row = asdict(self)
        row["goal"] = None if self.goal is None else {"target": self.goal.target, "at_least": self.goal.at_least}
        row["status"] = self.status
        return row


@dataclass
class Section:
    """One benchmark's rows as run: when, by which command, on how loaded a machine, and how long it took."""

    benchmark: str
    description: str
    command: str
    started: str
    seconds: float
    load_average: tuple[float, float]  # 1-minute load when it started and when it ended
    commit: str = field(default_factory=lambda: _commit())
    rows: list[Row] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**asdict(self), "rows": [row.as_dict() for row in self.rows]}


def _cpu_model() -> str:
    """The CPU model as lscpu names it (``/proc/cpuinfo`` or the platform where lscpu is missing)."""
    if shutil.which("lscpu"):
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"^Model name:\s*(.+)$", listing, re.MULTILINE)
        if match:
            return match.group(1).strip()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The CPU model, its cores, torch's threads, the GPU when there is one, and the versions that matter."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "os": platform.platform(),
        "versions": versions,
    }


def machine_name(info: dict) -> str:
    """The report's file stem, e.g. ``amd-epyc-2-cores`` (``...-nvidia-h100-80gb-hbm3`` with a GPU)."""
    cpu = re.sub(r"\((?:R|TM)\)|\b(?:CPU|Processor)\b|@\s*[\d.]+\s*GHz", " ", info["cpu"])
    words = f"{cpu} {info['cores']} cores {info['gpu'] or ''}"
    return re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")


def _cell(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if 1000 <= abs(value) < 1e6 else f"{value:.3g}"


def section_markdown(name: str, section: dict) -> str:
    """One benchmark's section (``Section.as_dict()``): what it measures, how it ran, and its table of figures."""
    start_load, end_load = section["load_average"]
    lines = [
        f"## {name}",
        "",
        section["description"],
        "",
        f"`{section['command']}` at {section['started']} (commit {section['commit']}), {section['seconds']:.0f} s,"
        f" 1-minute load average {start_load:.1f} at the start, {end_load:.1f} at the end",
        "",
        "| figure | value | unit | goal | status | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in section["rows"]:
        goal = row["goal"]
        goal_text = "" if goal is None else str(Goal(goal["target"], goal["at_least"]))
        lines.append(
            f"| {row['name']} | {_cell(row['value'])} | {row['unit']} | {goal_text} | {row['status']} | {row['note']} |"
        )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """The report as markdown: the machine and versions, then one table per benchmark with each goal's status."""
    info = report["machine"]
    gpu = info["gpu"] or "none"
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    lines = [
        f"# Benchmarks on {info['cpu']}, {info['cores']} cores",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads; GPU: {gpu}",
        f"- OS: {info['os']}",
        f"- versions: {versions}",
        "- each section is written by the command it names (`make bench BENCH=<name>` runs it); a rerun replaces it.",
        "- speed-ups are measured side by side in one run (alternating); absolute figures depend on the machine's",
        "  load, given as the 1-minute load average at the start and end of each section.",
    ]
    for name, section in report["benchmarks"].items():
        lines += ["", section_markdown(name, section)]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def write_report(sections: list[Section], results_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Merges ``sections`` into this machine's report (replacing earlier runs of the same benchmarks, keeping the
    others) and writes ``<results_dir>/<machine>.json`` and ``.md``; returns both paths."""
    info = machine()
    stem = results_dir / machine_name(info)
    json_path, markdown_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    previous = json.loads(json_path.read_text()).get("benchmarks", {}) if json_path.is_file() else {}
    benchmarks = {**previous, **{section.benchmark: section.as_dict() for section in sections}}
    report = {"machine": info, "written": now(), "benchmarks": benchmarks}
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    markdown_path.write_text(markdown(report))
    return json_path, markdown_path


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
