"""``python -m datamodules.preprocess``: see ``datamodules.preprocess.cli``."""

import sys

from datamodules.preprocess.cli import main

sys.exit(main())
