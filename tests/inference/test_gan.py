"""GAN training and the backends' general two-player loop, on both backends."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppgen
from ppgen import dist
from ppgen.backends import get_backend
from ppgen.backends.base import (
    GameConfig,
    OptimConfig,
    Phase,
    Player,
    SVIProblem,
    TracePair,
)
from ppgen.errors import ConfigError, ModelError
from ppgen.inference import gan
from ppgen.inference.generate import generate, model_arguments
from ppgen.modeling.model import BoundData


# -- the general loop: a game with a known answer ------------------------------------------------
def _game_model() -> None:
    a = ppgen.param("a", 0.0)
    b = ppgen.param("b", 0.0)
    ppgen.deterministic("a_value", a)
    ppgen.deterministic("b_value", b)


def _no_guide() -> None:
    pass


def _chase(be: Any, tr: TracePair) -> tuple[Any, Any]:
    loss = be.ops.mean(be.ops.square(tr.values["a_value"] - tr.values["b_value"]))
    return loss, loss


def _anchor(be: Any, tr: TracePair) -> tuple[Any, Any]:
    # The a-term pulls a to 0, but this player cannot move a: a must still end up near b = 3.
    ops = be.ops
    loss = ops.mean(
        ops.square(tr.values["b_value"] - 3.0) + 10.0 * ops.square(tr.values["a_value"])
    )
    return loss, loss


def test_game_updates_each_player_own_parameters(backend: str) -> None:
    be = get_backend(backend)
    problem = SVIProblem(_game_model, _no_guide, BoundData((), {}), "cpu", "game")
    sgd = OptimConfig(name="sgd", lr=0.1)
    chaser = Player("chaser", _chase, ("a",), sgd, steps=3)
    anchor = Player("anchor", _anchor, None, sgd)
    seen: list[tuple[str, int]] = []
    out = be.run_game(
        problem,
        [Phase((anchor,), 5, "warmup"), Phase((chaser, anchor), 60)],
        GameConfig(progress=False, every=20),
        callback=lambda phase, rounds, state: seen.append((phase, rounds)),
    )
    assert set(out.losses) == {"warmup/anchor", "train/chaser", "train/anchor"}
    assert out.losses["train/chaser"].shape == (60,) and out.losses["warmup/anchor"].shape == (5,)
    # b follows only its own loss (gradient descent on (b - 3)^2 from 0 for 65 steps)...
    assert float(out.params["b"]) == pytest.approx(3.0 * (1 - 0.8**65), abs=1e-4)
    # ...and a chases b with three updates per round, never pulled to 0 by the anchor's loss.
    assert float(out.params["a"]) == pytest.approx(3.0, abs=1e-3)
    # Every 20 rounds of a phase (the 5-round warm-up never reaches 20).
    assert seen == [("train", 20), ("train", 40), ("train", 60)]


def test_player_moving_average(backend: str) -> None:
    be = get_backend(backend)
    problem = SVIProblem(_game_model, _no_guide, BoundData((), {}), "cpu", "game")
    sgd = OptimConfig(name="sgd", lr=0.1)
    anchor = Player("anchor", _anchor, ("b",), sgd, average=0.5)
    chaser = Player("chaser", _chase, ("a",), sgd)
    snaps: list[float] = []
    out = be.run_game(
        problem,
        [Phase((anchor, chaser), 10)],
        GameConfig(progress=False, every=5),
        callback=lambda phase, rounds, state: snaps.append(rounds),
    )
    # b_t = 3 (1 - 0.8^t); its average m_t = m_{t-1} / 2 + b_t / 2 from m_0 = b_0 = 0.
    m = 0.0
    for t in range(1, 11):
        m = 0.5 * m + 0.5 * 3.0 * (1 - 0.8**t)
    assert float(out.params["b"]) == pytest.approx(m, abs=1e-5)
    assert float(out.params["a"]) != pytest.approx(m, abs=1e-3)  # a is not averaged
    assert snaps == [5, 10]
    with pytest.raises(ConfigError, match="average must be in"):
        Player("x", _chase, average=1.0)


def test_phase_checks_parameter_ownership(backend: str) -> None:
    be = get_backend(backend)
    problem = SVIProblem(_game_model, _no_guide, BoundData((), {}), "cpu", "game")
    nobody = Player("nobody", _chase, ("missing",))
    with pytest.raises(ModelError, match="'nobody' has no parameters"):
        be.run_game(problem, [Phase((nobody,), 2)], GameConfig(progress=False))
    both = Player("both", _chase, ("a",))
    with pytest.raises(ConfigError, match="'a' is claimed by players"):
        be.run_game(problem, [Phase((both, both), 2)], GameConfig(progress=False))


# -- the objectives ------------------------------------------------------------------------------
def _trace(real: Any, fake: Any) -> TracePair:
    return TracePair({}, {}, 1, values={gan.D_REAL: real, gan.D_FAKE: fake})


def test_gan_losses_match_their_definitions() -> None:
    be = get_backend("numpyro")
    real, fake = jnp.array([[2.0], [-1.0]]), jnp.array([[0.5], [-3.0]])
    sig = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5, -3.0])))
    j_d = -np.mean(np.log(sig[:2])) - np.mean(np.log(1 - sig[2:]))
    tr = _trace(real, fake)
    assert float(gan.discriminator_loss()(be, tr)[0]) == pytest.approx(j_d, rel=1e-5)
    surrogate, reported = gan.generator_loss("minimax")(be, tr)
    assert float(reported) == pytest.approx(-j_d, rel=1e-5)  # J^G = -J^D
    assert float(surrogate) == pytest.approx(np.mean(np.log(1 - sig[2:])), rel=1e-5)
    ns = gan.generator_loss("non_saturating")(be, tr)[0]
    assert float(ns) == pytest.approx(-np.mean(np.log(sig[2:])), rel=1e-5)
    # A probability-valued discriminator is clipped into [0.01, 0.99], as in the tutorial code.
    probs = _trace(jnp.array([[1.2]]), jnp.array([[0.3]]))
    expected = -np.log(0.99) - np.log(0.7)
    assert float(gan.discriminator_loss("probability")(be, probs)[0]) == pytest.approx(expected)


# -- gan1d ---------------------------------------------------------------------------------------
def _w1(result: ppgen.FitResult, n: int = 20000) -> float:
    be = get_backend(result.backend)
    args = model_arguments(result.model, result.problem.data)
    x = generate(result.model, be, result.state, args, n, seed=5)
    return float(stats.wasserstein_distance(x.ravel(), stats.norm(-1, 1).rvs(n, random_state=0)))


def test_gan1d_moves_toward_target(backend: str) -> None:
    # One step barely changes the generator: the distance to N(-1, 1) at the start.
    start = ppgen.fit("gan1d", method="gan", backend=backend, steps=1, progress=False, seed=3)
    fitted = ppgen.fit("gan1d", method="gan", backend=backend, steps=300, progress=False, seed=3)
    assert fitted.losses.shape == (300,) and set(fitted.metrics) == {
        "loss_discriminator",
        "loss_generator",
    }
    x = fitted.draws["x"].ravel()
    x0 = start.draws["x"].ravel()
    assert abs(x.mean() + 1) < 0.5 * abs(x0.mean() + 1)
    assert abs(x.std() - 1) < 0.6 * abs(x0.std() - 1)
    assert _w1(fitted) < 0.5 * _w1(start)


def test_gan1d_tutorial_preset_runs_pretraining() -> None:
    # Presets and phases are resolved above the backends; one backend suffices here.
    out = ppgen.fit(
        "gan1d",
        method="gan",
        backend="pyro",
        steps=20,
        progress=False,
        preset="tutorial",
        pretrain_steps=30,
    )
    cfg = out.config
    assert (cfg.optimizer, cfg.momentum, cfg.lr, cfg.staircase) == ("momentum", 0.6, 0.001, 4)
    assert cfg.discriminator_output == "probability" and cfg.pretrain == "density"
    pre = out.extras["pretrain_losses"]
    assert pre.shape == (30,) and np.all(np.isfinite(pre))
    # Regression onto the target density: the squared error falls during pre-training.
    assert pre[-5:].mean() < pre[:5].mean()
    assert out.problem.data.kwargs["batch"] == 200


def test_gan_option_errors() -> None:
    with pytest.raises(
        ConfigError, match="Unknown generator_loss 'minmax'.*did you mean 'minimax'"
    ):
        ppgen.fit("gan1d", method="gan", generator_loss="minmax", progress=False)
    with pytest.raises(ConfigError, match="no GAN preset 'tutorail'.*did you mean 'tutorial'"):
        ppgen.fit("gan1d", method="gan", preset="tutorail", steps=1, progress=False)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        ppgen.fit("gan1d", method="gan", k=0, progress=False)
    with pytest.raises(ConfigError, match="pretrain='density' needs the target density"):
        ppgen.fit("mlp_gan", method="gan", pretrain="density", steps=1, progress=False)


def test_implicit_model_needs_gan(backend: str) -> None:
    with pytest.raises(ModelError, match="'x' is implicit.*use method='gan'"):
        ppgen.fit("gan1d", method="reparam", backend=backend, steps=5, progress=False)


@ppgen.model(data=lambda: np.zeros((10, 1), np.float32))
def no_implicit(x: Any) -> None:
    ppgen.sample("z", dist.Normal(0.0, 1.0))


def test_gan_needs_an_implicit_site() -> None:
    with pytest.raises(ModelError, match="declares no implicit site"):
        ppgen.fit(
            no_implicit,
            method="gan",
            steps=2,
            progress=False,
            discriminator=ppgen.nn.mlp([1, 4, 1]),
        )


def test_mlp_gan_keeps_sample_snapshots() -> None:
    # NumPyro: the compiled chunks must end on the snapshot steps (Pyro's callbacks are
    # checked by the game tests above).
    out = ppgen.fit(
        "mlp_gan", method="gan", backend="numpyro", steps=40, progress=False, snapshot_every=20
    )
    snaps = out.extras["snapshots"]
    assert sorted(snaps) == [20, 40]
    assert all(s.shape == (16, 64) and np.all((s >= 0) & (s <= 1)) for s in snaps.values())
    assert out.draws["x"].shape == (1, 1000, 64)
