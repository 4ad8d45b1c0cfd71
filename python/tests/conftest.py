"""Shared fixtures: every multi-process test runs under each start method."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import shmring  # noqa: E402

START_METHODS = ["fork", "spawn", "forkserver"]

# Generous: processes start slowly on a loaded two-core machine.
WATCHDOG = 60


@pytest.fixture(params=START_METHODS)
def ctx(request):
    """A multiprocessing context of each start method."""
    return shmring.get_context(request.param)


def join_all(processes, timeout=WATCHDOG):
    """Joins every process within the watchdog, killing and failing on a hang."""
    hung = []
    for p in processes:
        p.join(timeout)
        if p.is_alive():
            hung.append(p)
            p.kill()
            p.join(5)
    assert not hung, f"processes did not finish within {timeout} s: {hung}"
