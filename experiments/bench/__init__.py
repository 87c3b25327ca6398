"""Benchmarks (measurements, not tests): ``python -m experiments.bench [name ...]`` (``make bench``) runs the
benchmarks of :data:`BENCHMARKS`, or those named, and writes this machine's report, ``results/bench/<machine>.md``
and ``.json`` (:mod:`experiments.bench.report`), one section per benchmark.

A benchmark is a module of this package with ``run(options: Options) -> list[Row]``: each row a figure with its
name, value, unit and goal (:class:`~experiments.bench.report.Row`); its docstring's first paragraph describes
it in the report.
"""

from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = ("sfe", "preprocess", "loaders", "generate", "lookahead")


@dataclass(frozen=True)
class Options:
    """What the user gives ``make bench`` beyond the benchmark names."""

    published: Path | None = None
    """A snapshot of the published code (Yaxinzhao97/MACL: a git repository, a checkout or an archive) that the
    SFE benchmark times side by side with this project's step; None: those rows are not measured."""
