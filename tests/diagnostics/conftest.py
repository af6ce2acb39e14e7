"""Fits shared by the diagnostics tests (each is slow to compile, and is only read)."""

from __future__ import annotations

import pytest

import ppgen


@pytest.fixture(scope="session")
def eight_schools_nuts() -> ppgen.FitResult:
    """NUTS on the non-centered eight schools, 4 vectorized chains, as ppgen.compare runs it."""
    return ppgen.fit(
        "eight_schools",
        method="nuts",
        backend="numpyro",
        num_chains=4,
        target_accept=0.9,
        progress=False,
        seed=1,
    )
