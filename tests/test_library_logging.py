"""crank is a library too: what it logs reaches the handlers of the program that
imported it, and nothing when that program set up none."""

from __future__ import annotations

import subprocess
import sys


def test_a_program_without_logging_set_up_hears_nothing_from_crank() -> None:
    """Python's last resort printed a bare ``redis_subscription_lost`` on the stderr of
    a producer whose Redis dropped; the program's own warnings still go there."""
    code = (
        "import logging, crank.runtime.brokers.redis\n"
        "logging.getLogger('crank.runtime.brokers.redis').warning(\n"
        "    'redis_subscription_lost', extra={'channel': 'crank:n:1', 'error': 'reset'})\n"
        "logging.getLogger('crank').error('crank_itself')\n"
        "logging.getLogger('billing').warning('the program its own')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert (out.stdout, out.stderr) == ("", "the program its own\n")
