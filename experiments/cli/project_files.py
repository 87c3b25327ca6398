"""Files of the project's own tree (``conf/``, ``experiments/tables/``, ``experiments/sweeps/``) found from any
working folder: a relative path is taken from the working folder when it is there, else from the project that
this package was installed from (an editable install, or a clone on ``PYTHONPATH``)."""

from pathlib import Path

from experiments.cli.errors import RunError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds ``experiments/`` and, in a clone, ``conf/``."""


def project_file(path: str | Path) -> Path:
    """``path`` as given when it exists (or is absolute), else the same relative path in :data:`PROJECT_ROOT`;
    RunError, one sentence, when it is in neither."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    beside = PROJECT_ROOT / path
    if beside.exists():
        return beside
    raise RunError(
        f"{path} is neither in the working folder {Path.cwd()} nor in the project {PROJECT_ROOT}: run the command "
        f"from a clone of the repository (its conf/ and experiments/ are not part of an installed package)."
    )
