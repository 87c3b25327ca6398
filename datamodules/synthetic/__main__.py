"""``python -m datamodules.synthetic``: generate the embedded corpus (see ``build.main``)."""

import sys

from datamodules.synthetic.build import main

sys.exit(main())
