"""The decorator, guides, data binding, primitives and ppgen.nn on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen import dist
from ppgen.errors import ConfigError, DataError, ModelError


def _regression_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(64, 1)).astype(np.float32)
    y = (np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=64)).astype(np.float32)
    return x, y


@ppgen.model(data=_regression_data)
def net_regression(x, y):
    """Neural regression written once with ppgen primitives and ppgen.nn."""
    net = ppgen.module("f", ppgen.nn.mlp([1, 16, 1], activation="tanh"))
    noise = ppgen.sample("noise", dist.LogNormal(-1.0, 0.5))
    with ppgen.plate("data", x.shape[0]):
        ppgen.sample("y", dist.Normal(net(x)[..., 0], noise), obs=y)


def test_same_nn_model_runs_on_both_backends() -> None:
    finals = {}
    for backend in ("numpyro", "pyro"):
        result = ppgen.fit(net_regression, backend=backend, steps=400, lr=0.02, progress=False)
        first, last = result.losses[:20].mean(), result.losses[-20:].mean()
        # sin(2x) is far from linear: the network must learn, so the loss drops a lot.
        assert last < first - 30, (backend, first, last)
        assert any(k.startswith("f") for k in result.params)
        finals[backend] = last
        noise = result.posterior_samples(2000)["noise"]
        assert 0.05 < np.median(noise) < 0.5
    assert set(finals) == {"numpyro", "pyro"}


def test_backend_native_model_refuses_other_backend() -> None:
    import pyro
    import pyro.distributions as pdist

    @ppgen.model(backend="pyro", data=lambda: np.zeros(5, np.float32))
    def native(x):
        mu = pyro.sample("mu", pdist.Normal(0.0, 1.0))
        with pyro.plate("n", x.shape[0]):
            pyro.sample("x", pdist.Normal(mu, 1.0), obs=x)

    with pytest.raises(ModelError, match="written for pyro only"):
        ppgen.fit(native, backend="numpyro", steps=5, progress=False)
    result = ppgen.fit(
        native, backend="pyro", steps=1500, lr=0.02, lr_decay=0.05, particles=8, progress=False
    )
    # Exact posterior of mu for five zeros: N(0, 1/6); the auto guide is in its family.
    mu = result.posterior_samples(20000)["mu"]
    sd = 6**-0.5
    assert abs(mu.mean()) < 0.1 * sd and abs(mu.std() / sd - 1) < 0.1


def test_decorator_forms_and_guides() -> None:
    @ppgen.model
    def bare(x):
        ppgen.sample("z", dist.Normal(0.0, 1.0))

    assert bare.name == "bare" and bare.guides == {} and bare.resolve_guide(None) == "normal"

    @ppgen.model(name="named", auto="mvn", description="one line")
    def f(x):
        ppgen.sample("z", dist.Normal(0.0, 1.0))

    @f.guide
    def first(x):
        ppgen.sample("z", dist.Normal(ppgen.param("m", 0.0), 1.0))

    @f.guide(name="second")
    def other(x):
        ppgen.sample("z", dist.Normal(0.0, 2.0))

    assert f.name == "named" and f.description == "one line"
    assert list(f.guides) == ["first", "second"]
    assert f.resolve_guide(None).name == "first"
    assert f.resolve_guide("second").fn is other
    assert f.resolve_guide("auto") == "mvn"
    with pytest.raises(ModelError, match="did you mean 'second'"):
        f.resolve_guide("secnd")


def test_data_validation() -> None:
    model = ppgen.get_model("normal_normal")
    with pytest.raises(DataError, match="NaN or infinite"):
        model.bind(np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="does not match its signature"):
        model.bind((np.zeros(3), np.zeros(3)))
    with pytest.raises(DataError, match="not a numeric array"):
        model.bind(np.array([object()]))
    bound = model.bind([1, 2, 3])
    assert bound.args[0].dtype == np.int64
    assert model.bind({"x": np.ones(2)}).kwargs["x"].dtype == np.float32


def test_primitives_need_a_backend() -> None:
    with pytest.raises(ConfigError, match="No ppgen backend is active"):
        ppgen.sample("z", None)


def test_primitives_dispatch(backend: str) -> None:
    with ppgen.use_backend(backend):
        assert ppgen.current_backend() == backend
        d = dist.Normal(0.0, 1.0)
        assert type(d).__module__.split(".")[0] == backend
        x = ppgen.ops.asarray(np.arange(3.0))
        assert float(ppgen.ops.sum(ppgen.ops.exp(ppgen.ops.log(x + 1.0)))) == pytest.approx(6.0)
    assert ppgen.current_backend() is None


def test_mlp_validation() -> None:
    with pytest.raises(ConfigError, match="at least an input and an output"):
        ppgen.nn.mlp([4])
    with pytest.raises(ConfigError, match="Unknown activation"):
        ppgen.nn.mlp([4, 2], activation="relu6")
