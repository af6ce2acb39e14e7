"""A guard against a known XLA:CPU miscompilation, applied when ppgen is imported.

jaxlib 0.10.2 hands some fused "elementwise after reduce" kernels on CPU to YNNPACK, which returns
wrong values once the output passes 32,768 float32 elements (jax-ml/jax#39103): for a NumPyro
model such as ``Normal(sum(X * w, -1), s).log_prob(y)`` over a few hundred particles, the jitted
log-likelihood is off by units while the eager one is right. Turning the YNN fusion path off
(``--xla_cpu_experimental_ynn_fusion_type=``) restores correct results. XLA reads ``XLA_FLAGS``
when JAX first starts its CPU client, so setting it on import of ppgen is early enough unless
JAX has already run a computation.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import PackageNotFoundError, version

__all__ = ["FLAG", "guard_xla_flags"]

FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def guard_xla_flags() -> None:
    """Add :data:`FLAG` to ``XLA_FLAGS`` for jaxlib >= 0.10.2, unless the user set that flag."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in flags:
        return
    try:
        found = re.match(r"(\d+)\.(\d+)\.(\d+)", version("jaxlib"))
    except PackageNotFoundError:
        return
    # Older jaxlib does not know the flag and would refuse to start.
    if found and tuple(int(g) for g in found.groups()) >= (0, 10, 2):
        # First: XLA stops reading at a token without "--" (such as intra_op_parallelism_threads=1).
        os.environ["XLA_FLAGS"] = f"{FLAG} {flags}".strip()


guard_xla_flags()
