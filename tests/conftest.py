"""Test setup: one torch thread, one XLA CPU thread, no display — deterministic and quiet."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# One XLA CPU thread too: timings and results stay stable on a shared 2-core machine.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
).strip()

import pytest
import torch

torch.set_num_threads(1)

BACKENDS = ["numpyro", "pyro"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once per backend."""
    return str(request.param)
