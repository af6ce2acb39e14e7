"""Sample-quality metrics for deep generative models.

- 1-D samples against a known target: Wasserstein-1, the Kolmogorov-Smirnov statistic, mean and
  sd (:func:`one_d_quality`).
- Images: the Fréchet distance between real and generated images in the hidden-layer features of
  a small digit classifier (:func:`classifier_frechet_distance`; the FID of Heusel et al. 2017
  with a classifier suited to 8x8 digits instead of Inception), and class coverage, the
  classifier's label histogram over generated images (:func:`class_coverage`), which shows mode
  collapse. The classifier is trained deterministically on the digits training split the first
  time it is needed and cached (:func:`digit_classifier`); nothing is downloaded.
- Latent-variable models: the held-out ELBO and the importance-sampled estimate of
  ``-log p(x)`` with K guide draws per data point (:func:`heldout_log_likelihood`, Burda et al.
  2016), batched over data points and draws; and the independent-Bernoulli baseline
  (:func:`bernoulli_baseline_nll`) that any model of binary images should beat.

References
----------
Heusel, M., Ramsauer, H., Unterthiner, T., Nessler, B. & Hochreiter, S. (2017). GANs trained by a
two time-scale update rule converge to a local Nash equilibrium. NeurIPS.
Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg, special, stats

from ppgen.backends.base import Backend, SVIProblem, TracePair
from ppgen.errors import ConfigError, DataError, ModelError

__all__ = [
    "DigitClassifier",
    "HeldOutLikelihood",
    "ImageQuality",
    "OneDQuality",
    "bernoulli_baseline_nll",
    "chunks_of",
    "class_coverage",
    "classifier_frechet_distance",
    "digit_classifier",
    "digits_quality",
    "frechet_distance",
    "heldout_log_likelihood",
    "one_d_quality",
    "per_datapoint_log_weights",
]


# -- 1-D samples ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class OneDQuality:
    """1-D samples against a target: Wasserstein-1, KS statistic, and both means and sds."""

    w1: float
    ks: float
    mean: float
    sd: float
    target_mean: float
    target_sd: float


def one_d_quality(samples: Any, target: Any, grid: int = 100_000) -> OneDQuality:
    """Compare 1-D ``samples`` with a frozen scipy distribution ``target``.

    W1 is measured against ``grid`` evenly spaced quantiles of the target (its error is far
    below that of the samples for ``grid`` >= the sample size); KS is the exact one-sample
    statistic against the target's CDF.

    Examples
    --------
    >>> from scipy import stats
    >>> q = one_d_quality(stats.norm(-1, 1).rvs(20000, random_state=0), stats.norm(-1, 1))
    >>> q.w1 < 0.03 and q.ks < 0.02
    True
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < 2 or not np.all(np.isfinite(x)):
        raise DataError(f"one_d_quality needs at least 2 finite samples, got {x.size}.")
    quantiles = target.ppf((np.arange(grid) + 0.5) / grid)
    return OneDQuality(
        w1=float(stats.wasserstein_distance(x, quantiles)),
        ks=float(stats.kstest(x, target.cdf).statistic),
        mean=float(x.mean()),
        sd=float(x.std(ddof=1)),
        target_mean=float(target.mean()),
        target_sd=float(target.std()),
    )


# -- images --------------------------------------------------------------------------------------
def frechet_distance(a: Any, b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al. 2017)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise DataError(
            f"frechet_distance needs two (samples, features) arrays with the same feature count "
            f"and at least 2 rows each, got shapes {a.shape} and {b.shape}."
        )
    mu = a.mean(0) - b.mean(0)
    # A tiny ridge keeps the product non-singular when a feature is constant (a dead unit).
    ridge = 1e-6 * np.eye(a.shape[1])
    sa, sb = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    # sqrtm of a product of covariances is real up to rounding.
    root = np.real(linalg.sqrtm(sa @ sb))
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * np.trace(root))


@dataclass(frozen=True)
class DigitClassifier:
    """A one-hidden-layer ReLU classifier of flat images; its hidden layer gives features."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def features(self, x: Any) -> np.ndarray:
        """Hidden-layer activations, shape ``(n, hidden)``."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.w1.shape[0]:
            raise DataError(
                f"The classifier takes flat images of {self.w1.shape[0]} pixels, got shape "
                f"{x.shape}; reshape the images to (n, {self.w1.shape[0]})."
            )
        return np.maximum(x @ self.w1 + self.b1, 0.0)

    def predict(self, x: Any) -> np.ndarray:
        """Most probable class of each image."""
        return np.argmax(self.features(x) @ self.w2 + self.b2, axis=1)

    def accuracy(self, x: Any, labels: Any) -> float:
        return float(np.mean(self.predict(x) == np.asarray(labels)))


def _cache_dir() -> Path:
    root = os.environ.get("PPGEN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "ppgen"
    )
    return Path(root)


def _train_classifier(x: np.ndarray, labels: np.ndarray, hidden: int) -> DigitClassifier:
    from sklearn.neural_network import MLPClassifier

    # L-BFGS from a seeded start is deterministic; the weight decay keeps features smooth.
    clf = MLPClassifier(
        hidden_layer_sizes=(hidden,), solver="lbfgs", alpha=1e-2, max_iter=2000, random_state=0
    )
    clf.fit(x, labels)
    w1, w2 = clf.coefs_
    b1, b2 = clf.intercepts_
    return DigitClassifier(w1, b1, w2, b2)


def _load_or_train(path: Path, x: np.ndarray, labels: np.ndarray, hidden: int) -> DigitClassifier:
    if path.is_file():
        with np.load(path) as f:
            loaded = DigitClassifier(f["w1"], f["b1"], f["w2"], f["b2"])
        if loaded.w1.shape == (x.shape[1], hidden):
            return loaded
    clf = _train_classifier(x, labels, hidden)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, w1=clf.w1, b1=clf.b1, w2=clf.w2, b2=clf.b2)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs training again next time
    return clf


#: Classifiers already loaded in this process, by the hash of their training data and settings.
_LOADED: dict[str, DigitClassifier] = {}


def digit_classifier(images: Any = None, labels: Any = None, hidden: int = 32) -> DigitClassifier:
    """The feature extractor for image metrics: trained once, deterministically, then cached.

    Parameters
    ----------
    images, labels
        Training images ``(n, pixels)`` in [0, 1] and their classes. ``None`` uses the grey-level
        digits training split bundled with scikit-learn (64 pixels).
    hidden
        Width of the hidden (feature) layer.

    Returns
    -------
    DigitClassifier
        Cached in memory and as ``digit-classifier-<hash>.npz`` in ``$PPGEN_CACHE`` (default
        ``~/.cache/ppgen``), keyed by a hash of the training data and settings.
    """
    if images is None:
        from ppgen.data import digits, digits_labels

        images, labels = digits(binarize=False, split="train"), digits_labels(split="train")
    if labels is None:
        raise ConfigError("digit_classifier needs the labels of the images it is trained on.")
    x = np.ascontiguousarray(images, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise DataError(
            f"digit_classifier needs images of shape (n, pixels) and n labels, got {x.shape} "
            f"and {y.shape}."
        )
    digest = hashlib.sha256()
    for part in (x.tobytes(), y.tobytes(), f"{x.shape}-{hidden}-v1".encode()):
        digest.update(part)
    key = digest.hexdigest()[:16]
    if key not in _LOADED:
        path = _cache_dir() / f"digit-classifier-{key}.npz"
        _LOADED[key] = _load_or_train(path, x, y, int(hidden))
    return _LOADED[key]


def classifier_frechet_distance(
    generated: Any, reference: Any, classifier: DigitClassifier | None = None
) -> float:
    """Fréchet distance between generated and reference images in the classifier's features."""
    clf = classifier or digit_classifier()
    return frechet_distance(clf.features(generated), clf.features(reference))


def class_coverage(
    generated: Any, classifier: DigitClassifier | None = None, classes: int = 10
) -> np.ndarray:
    """The share of generated images the classifier assigns to each class (sums to 1)."""
    clf = classifier or digit_classifier()
    labels = clf.predict(generated)
    return np.bincount(labels, minlength=classes).astype(np.float64) / max(1, len(labels))


@dataclass(frozen=True)
class ImageQuality:
    """Generated images against a reference set, in a classifier's feature space.

    ``floor`` is the distance between two real sets (the classifier's training split and the
    reference), the value a perfect generator would reach; ``coverage`` the share of generated
    images per class.
    """

    frechet: float
    floor: float
    coverage: np.ndarray
    samples: int

    @property
    def ratio(self) -> float:
        """Fréchet distance over the real-vs-real floor (1 is as good as real data)."""
        return self.frechet / self.floor

    def to_dict(self) -> dict[str, Any]:
        return {
            "frechet_classifier_distance": self.frechet,
            "real_vs_real_floor": self.floor,
            "ratio_to_floor": self.ratio,
            "class_coverage": [float(c) for c in self.coverage],
            "samples": self.samples,
        }


def digits_quality(generated: Any) -> ImageQuality:
    """Fréchet classifier distance of generated 8x8 digits to the digits test split, the
    train-vs-test floor, and class coverage (classifier: :func:`digit_classifier`).

    Generate as many images as the training split has (1437) so that the distance and the floor
    carry the same finite-sample bias.
    """
    from ppgen.data import digits

    clf = digit_classifier()
    test = digits(binarize=False, split="test")
    train = digits(binarize=False, split="train")
    return ImageQuality(
        frechet=classifier_frechet_distance(generated, test, clf),
        floor=classifier_frechet_distance(train, test, clf),
        coverage=class_coverage(generated, clf),
        samples=len(np.asarray(generated)),
    )


# -- latent-variable models ----------------------------------------------------------------------
def bernoulli_baseline_nll(train: Any, test: Any) -> float:
    """Mean test ``-log p(x)`` (nats per image) of independent Bernoulli pixels whose
    probabilities are the training frequencies (add-one smoothed)."""
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    p = (train.sum(0) + 1.0) / (len(train) + 2.0)
    ll = test @ np.log(p) + (1.0 - test) @ np.log1p(-p)
    return float(-ll.mean())


@dataclass(frozen=True)
class HeldOutLikelihood:
    """Per data point: the ELBO (mean log weight) and the importance-sampled estimate of
    ``-log p(x)`` from ``particles`` guide draws (the IWAE bound, Burda et al. 2016)."""

    elbo: np.ndarray
    nll: np.ndarray
    particles: int

    @property
    def neg_elbo(self) -> float:
        """Mean negative ELBO per data point (nats)."""
        return float(-self.elbo.mean())

    @property
    def nll_mean(self) -> float:
        """Mean importance-sampled negative log-likelihood per data point (nats)."""
        return float(self.nll.mean())


def per_datapoint_log_weights(be: Backend, tr: TracePair, plate: str = "data") -> Any:
    """``log p(x_i, z_i) - log q(z_i | x_i)`` per particle and data point, shape
    ``(particles, n)``: every site's log-density summed over all dims but ``plate``'s."""
    ops = be.ops
    total: Any = 0.0
    for part, sign in ((tr.model, 1.0), (tr.guide, -1.0)):
        for site in part.values():
            if sign < 0 and site.observed:
                continue
            info = [p for p in site.plates if p.name == plate]
            lp = site.log_prob
            axis = lp.ndim + info[0].dim if info else 0
            if axis < 1:
                raise ModelError(
                    f"Site {site.name!r} is not inside plate {plate!r}, so its log-density "
                    "cannot be split by data point; per-data-point bounds need every site in "
                    "that plate."
                )
            axes = tuple(a for a in range(1, lp.ndim) if a != axis)
            total = total + sign * (ops.sum(lp, axes) if axes else lp)
    return total


def chunks_of(n: int, size: int) -> Iterator[slice]:
    """Slices covering ``range(n)`` in pieces of at most ``size``."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def heldout_log_likelihood(
    be: Backend,
    state: Any,
    problems: Iterable[SVIProblem],
    particles: int = 1000,
    seed: int = 0,
    plate: str = "data",
    particle_chunk: int = 250,
) -> HeldOutLikelihood:
    """Held-out ELBO and importance-sampled NLL of a fitted model and guide.

    Parameters
    ----------
    be, state
        The backend and the fitted state (from a fit, or :meth:`Backend.load_state`).
    problems
        The held-out data in chunks: each problem's model and guide run on one chunk of data
        points, without subsampling, all sites inside ``plate``.
    particles
        Guide draws per data point, K (up to a few thousand), drawn ``particle_chunk`` at a time.

    Returns
    -------
    HeldOutLikelihood
        ``elbo_i = mean_k log w_ik`` and ``nll_i = -log(mean_k w_ik)``, with
        ``w_ik = p(x_i, z_ik) / q(z_ik | x_i)``.
    """
    if int(particles) != particles or particles < 1:
        raise ConfigError(f"particles must be a positive integer, got {particles!r}.")

    def fn(backend: Backend, tr: TracePair) -> Any:
        return per_datapoint_log_weights(backend, tr, plate)

    elbo, nll = [], []
    for index, problem in enumerate(problems):
        parts = []
        for j, rows in enumerate(chunks_of(int(particles), int(particle_chunk))):
            n = rows.stop - rows.start
            parts.append(be.trace_eval(problem, state, fn, n, seed + 7919 * index + j))
        log_w = np.concatenate(parts, axis=0).astype(np.float64)
        elbo.append(log_w.mean(0))
        nll.append(-(special.logsumexp(log_w, axis=0) - np.log(particles)))
    return HeldOutLikelihood(np.concatenate(elbo), np.concatenate(nll), int(particles))
