"""Benchmarks (measurements, not tests): ``python -m experiments.bench [name ...]`` runs every module of this
package, or those named. Each module has ``run() -> list[dict]`` (one dict per table row); the runner writes
``bench/<name>.json`` with the machine and the rows, and prints a markdown table.
"""

import json
import os
import platform
from pathlib import Path

import torch

OUTPUT_DIR = Path("bench")


def machine() -> dict:
    """The CPU model, core count, torch version and thread count, and the GPU when there is one."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = models[0] if models else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def markdown_table(rows: list[dict]) -> str:
    """Rows of dicts -> a markdown table whose columns are the keys in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cell = lambda value: f"{value:.3g}" if isinstance(value, float) else str(value)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def report(name: str, rows: list[dict], output_dir: Path = OUTPUT_DIR) -> Path:
    """Writes ``<output_dir>/<name>.json`` and prints the machine and the rows as markdown."""
    info = machine()
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": info, "rows": rows}, indent=2) + "\n")
    gpu = f", GPU {info['gpu']}" if info["gpu"] else ""
    print(f"\n### {name}\n")
    print(f"{info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads){gpu}, torch {info['torch']}\n")
    print(markdown_table(rows))
    print(f"\n(written to {path})")
    return path
