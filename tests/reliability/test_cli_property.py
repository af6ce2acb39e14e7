"""Property test: whatever arguments the CLI gets, it answers without a traceback."""

from __future__ import annotations

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppgen.cli import cli

WORDS = st.sampled_from(
    [
        "coin",
        "coim",
        "linreg",
        "",
        "nuts",
        "reparam",
        "-1",
        "0",
        "1",
        "2.5",
        "nan",
        "x",
        "cuda",
        "cpu",
        "cuda:9",
        "pyro",
        "numpyro",
        "jax",
        "auto",
        "lr_decay=0.5",
        "a=b",
        "=",
        "--",
    ]
)
FLAGS = st.sampled_from(
    [
        "--method",
        "--backend",
        "--device",
        "--steps",
        "--seed",
        "--lr",
        "--particles",
        "--guide",
        "--threads",
        "-o",
        "--checkpoint-every",
        "--on-nonfinite",
        "--bogus",
    ]
)
ARGV = st.lists(st.one_of(WORDS, FLAGS, st.text(max_size=6)), max_size=8)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=ARGV)
def test_fit_arguments_never_traceback(argv: list[str]) -> None:
    # --dry-run checks everything a real fit checks, without fitting.
    result = CliRunner().invoke(cli, ["fit", *argv, "--dry-run"])
    assert result.exit_code in (0, 2), (argv, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert lines and ("error" in lines[-1].lower() or "Error" in result.output)
