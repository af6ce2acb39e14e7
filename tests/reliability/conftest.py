"""Shared pieces of the reliability tests: small run directories with checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

import ppgen


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished normal_normal run (NumPyro) with a checkpoint, as a resumable directory."""
    out = tmp_path_factory.mktemp("runs") / "nn"
    ppgen.fit("normal_normal", steps=20, checkpoint_every=10, out=out, progress=False)
    return out
