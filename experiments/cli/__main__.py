"""``python -m experiments.cli``: the stage runs of the Makefile."""

from experiments.cli.lightning_cli import main

main()
