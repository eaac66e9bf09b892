"""Missing test dependencies: a skip on a developer's machine, a failure when the CI variable is set.

CI (scripts/test.sh) installs espeak-ng, sox, PulseAudio, PortAudio, Xvfb, PyInstaller and the
reference xcodec2 package; a test that needs one must not quietly pass there by skipping. Only
"needs CUDA / macOS / Windows / Linux" skips stay plain skips.
"""
from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """Skip with `what` (what is missing and how to get it); fail instead when the CI variable is set."""
    if os.environ.get("CI"):
        pytest.fail(f"missing test dependency: {what} (CI is set, so this fails instead of skipping; "
                    "run scripts/test.sh as root to install it)", pytrace=False)
    pytest.skip(what)
