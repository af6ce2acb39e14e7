"""Plugins register models through the ``ppgen.models`` entry-point group, like the built-ins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ppgen
from ppgen.errors import UnknownNameError
from ppgen.modeling import registry

PLUGIN = textwrap.dedent(
    '''
    import ppgen
    from ppgen import dist

    @ppgen.model(data=lambda: [0.5, 1.5, 1.0])
    def plugged(x):
        """A model from a plugin package."""
        mu = ppgen.sample("mu", dist.Normal(0.0, 10.0))
        with ppgen.plate("n", x.shape[0]):
            ppgen.sample("x", dist.Normal(mu, 1.0), obs=x)
    '''
)


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed distribution (package + dist-info metadata) on sys.path."""
    (tmp_path / "ppgen_plugin_demo").mkdir()
    (tmp_path / "ppgen_plugin_demo" / "__init__.py").write_text(PLUGIN)
    info = tmp_path / "ppgen_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ppgen-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ppgen.models]\nplugged = ppgen_plugin_demo:plugged\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield tmp_path
    registry.refresh()


def test_builtins_register_through_entry_points() -> None:
    models = ppgen.list_models()
    assert {"coin", "normal_normal", "linreg", "logistic", "eight_schools"} <= set(models)
    assert models["coin"].source == "ppgen"
    assert {"reparam", "nuts"} <= set(ppgen.list_methods())


def test_plugin_model_appears_and_fits(plugin_path: Path) -> None:
    assert ppgen.list_models()["plugged"].source == "ppgen-plugin-demo"
    result = ppgen.fit("plugged", steps=800, lr=0.05, progress=False)
    mu = result.posterior_samples(4000)["mu"]
    # Exact posterior: precision 1/100 + 3, mean 3.0 / precision.
    precision = 0.01 + 3
    assert abs(mu.mean() - 3.0 / precision) < 0.1 * precision**-0.5 * 3


def test_plugin_in_cli_list(plugin_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    out = subprocess.run(
        [sys.executable, "-m", "ppgen.cli", "list"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "plugged" in out.stdout and "ppgen-plugin-demo" in out.stdout


def test_unknown_model_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'coin'"):
        ppgen.get_model("con")
    with pytest.raises(UnknownNameError, match="Unknown method 'reparm'.*'reparam'"):
        ppgen.get_method("reparm")
