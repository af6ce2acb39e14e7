"""``ppgen.nn``: backend-neutral descriptions of the few network shapes the zoo needs.

A network is described once (:func:`mlp`) and built for the active backend by
:func:`ppgen.module`: a ``torch.nn.Module`` under Pyro, a Flax module under NumPyro.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppgen.errors import ConfigError

__all__ = ["ACTIVATIONS", "MLP", "Network", "mlp"]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "elu", "leaky_relu", "identity")


class Network:
    """A network description that can be built on either backend."""

    in_features: int

    def build_torch(self) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def build_flax(self) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class MLP(Network):
    """A fully connected network ``sizes[0] -> ... -> sizes[-1]``.

    ``activation`` follows every hidden layer; ``output`` (or none) follows the last one and
    the result is multiplied by ``output_scale``.
    """

    sizes: tuple[int, ...]
    activation: str = "relu"
    output: str | None = None
    output_scale: float = 1.0

    @property
    def in_features(self) -> int:  # type: ignore[override]
        return self.sizes[0]

    def build_torch(self) -> Any:
        import torch

        class _TorchMLP(torch.nn.Module):
            def __init__(self, spec: MLP) -> None:
                super().__init__()
                self.spec = spec
                self.layers = torch.nn.ModuleList(
                    torch.nn.Linear(a, b)
                    for a, b in zip(spec.sizes[:-1], spec.sizes[1:], strict=True)
                )

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                last = len(self.layers) - 1
                for i, layer in enumerate(self.layers):
                    x = layer(x)
                    x = _torch_act(self.spec.activation if i < last else self.spec.output, x)
                return x * self.spec.output_scale if self.spec.output_scale != 1.0 else x

        return _TorchMLP(self)

    def build_flax(self) -> Any:
        return _flax_mlp_class()(
            sizes=self.sizes,
            activation=self.activation,
            output=self.output,
            output_scale=self.output_scale,
        )


def _torch_act(name: str | None, x: Any) -> Any:
    import torch.nn.functional as F

    if name is None or name == "identity":
        return x
    if name == "leaky_relu":
        return F.leaky_relu(x, 0.2)
    return getattr(F, name)(x) if name not in ("tanh", "sigmoid") else getattr(x, name)()


def _jax_act(name: str | None, x: Any) -> Any:
    import jax

    if name is None or name == "identity":
        return x
    if name == "leaky_relu":
        return jax.nn.leaky_relu(x, 0.2)
    return getattr(jax.nn, name)(x) if name != "tanh" else jax.numpy.tanh(x)


_FLAX_MLP: Any = None


def _flax_mlp_class() -> Any:
    # Defined lazily so that importing ppgen does not import flax.
    global _FLAX_MLP
    if _FLAX_MLP is None:
        import flax.linen as fnn

        class FlaxMLP(fnn.Module):
            sizes: tuple[int, ...]
            activation: str
            output: str | None
            output_scale: float

            @fnn.compact
            def __call__(self, x: Any) -> Any:
                last = len(self.sizes) - 2
                for i, width in enumerate(self.sizes[1:]):
                    x = fnn.Dense(width)(x)
                    x = _jax_act(self.activation if i < last else self.output, x)
                return x * self.output_scale if self.output_scale != 1.0 else x

        _FLAX_MLP = FlaxMLP
    return _FLAX_MLP


def mlp(
    sizes: list[int] | tuple[int, ...],
    activation: str = "relu",
    output: str | None = None,
    output_scale: float = 1.0,
) -> MLP:
    """Describe a multilayer perceptron.

    Parameters
    ----------
    sizes
        Layer widths including input and output, e.g. ``[64, 128, 8]``.
    activation
        Hidden-layer nonlinearity, one of :data:`ACTIVATIONS`.
    output
        Nonlinearity after the last layer, or ``None`` for a linear output.
    output_scale
        Constant the output is multiplied by (the 1-D GAN scales a tanh output by 5).

    Examples
    --------
    >>> net = mlp([64, 128, 16], activation="tanh")
    >>> net.in_features
    64
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ConfigError(
            f"mlp sizes {list(sizes)} must list at least an input and an output width, "
            "all positive; for example mlp([64, 128, 8])."
        )
    for act in (activation, output):
        if act is not None and act not in ACTIVATIONS:
            raise ConfigError(
                f"Unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}."
            )
    return MLP(sizes, activation, output, float(output_scale))
