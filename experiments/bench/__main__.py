"""``python -m experiments.bench [name ...] [--published PATH]``: runs the named benchmarks (default all) and
updates this machine's report in results/bench/."""

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from experiments.bench import BENCHMARKS, Options
from experiments.bench.report import Section, now, section_markdown, write_report


def run_benchmark(name: str, options: Options, command: str) -> Section:
    """Runs one benchmark module and wraps its rows with when, how long and under what load it ran."""
    module = importlib.import_module(f"experiments.bench.{name}")
    description = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
    started, load_before, began = now(), os.getloadavg()[0], time.perf_counter()
    rows = module.run(options)
    seconds = time.perf_counter() - began
    return Section(name, description, command, started, seconds, (load_before, os.getloadavg()[0]), rows=rows)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=f"any of: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--published", metavar="PATH", type=Path,
                        help="a snapshot of Yaxinzhao97/MACL (git repository, checkout, .tar/.zip) to time beside "
                        "this project's SFE step (make bench PUBLISHED=PATH)")  # fmt: skip
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; the benchmarks are {', '.join(BENCHMARKS)}")
    options = Options(published=arguments.published)
    command = " ".join(["python -m experiments.bench", *argv])
    for name in arguments.names or BENCHMARKS:
        section = run_benchmark(name, options, command)
        json_path, markdown_path = write_report([section])
        print("\n" + section_markdown(name, section.as_dict()))
        print(f"(written to {markdown_path} and {json_path})", flush=True)


if __name__ == "__main__":
    main()
