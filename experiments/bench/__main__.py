"""``python -m experiments.bench [name ...]``: runs the named benchmark modules, or all of them."""

import argparse
import importlib
import pkgutil

import experiments.bench as bench


def available() -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(bench.__path__) if not module.name.startswith("_"))


def main(argv: list[str] | None = None) -> None:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=f"any of: {', '.join(names)} (default: all)")
    chosen = parser.parse_args(argv).names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; the benchmarks are {', '.join(names)}")
    for name in chosen or names:
        bench.report(name, importlib.import_module(f"experiments.bench.{name}").run())


if __name__ == "__main__":
    main()
