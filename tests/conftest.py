"""Test setup: one torch thread, one XLA CPU thread, no display — deterministic and quiet."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import pytest
import torch

torch.set_num_threads(1)

BACKENDS = ["numpyro", "pyro"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once per backend."""
    return str(request.param)
