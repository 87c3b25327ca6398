"""What a researcher runs: the shared training CLI, generation, evaluation, tables, sweeps, benchmarks."""
