"""What the subcommands share: status lines on stderr (stdout stays for results, e.g. a transcript)."""
from __future__ import annotations

import sys


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
