"""Whether W&B may log online: a run logs offline unless the user has logged in (or set ``WANDB_MODE``)."""

import netrc
import os
from urllib.parse import urlparse


def wandb_logged_in() -> bool:
    """Whether W&B credentials exist (environment or ~/.netrc), without touching the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
