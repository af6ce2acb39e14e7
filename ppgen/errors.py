"""Exceptions raised by ppgen.

Every error ppgen raises on purpose derives from :class:`PPGenError`, so callers can catch the
package's own failures in one clause. Each subclass also derives from the built-in exception that
best describes it (``ValueError``, ``KeyError``, ...), so code written against the standard
library's conventions keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = [
    "BackendError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "ModelError",
    "NonFiniteError",
    "PPGenError",
    "RunDirError",
    "TrainingInterrupted",
    "UnknownNameError",
    "suggest",
]


class PPGenError(Exception):
    """Base class of every error that ppgen raises on purpose.

    Every message is one sentence that says what is wrong and what to do about it, for example
    ``"Unknown split 'tst'; use one of 'train', 'test' or 'all'."``.
    """


class ConfigError(PPGenError, ValueError):
    """An option value is out of range, of the wrong type, or inconsistent with another option."""


class ModelError(PPGenError, ValueError):
    """A model or guide cannot be used as asked (missing guide site, discrete latent, ...)."""


class DataError(PPGenError, ValueError):
    """A data set or data file is missing, malformed, or of the wrong shape or type."""


class BackendError(PPGenError, RuntimeError):
    """A backend (Pyro or NumPyro) is unavailable or cannot do what was asked."""


class DeviceError(BackendError):
    """The requested device (for example ``"cuda:1"``) is not available."""


class UnknownNameError(PPGenError, KeyError):
    """A registry lookup (model, guide, method, data set, ...) found no entry of that name.

    It is a :class:`KeyError` so ``except KeyError`` keeps working, but its string form is the
    message itself rather than the quoted ``repr`` that :class:`KeyError` prints.
    """

    def __str__(self) -> str:
        # KeyError.__str__ returns repr(key), which would wrap the sentence in quotes.
        return Exception.__str__(self)


class NonFiniteError(PPGenError, FloatingPointError):
    """A loss, gradient or parameter became NaN or infinite during a run.

    Parameters
    ----------
    message : str
        One sentence saying what went non-finite and what to try.
    step : int
        The optimisation step at which the non-finite value appeared.
    site : str or None, optional
        The sample or parameter site involved, when it is known.

    Attributes
    ----------
    step : int
        The optimisation step at which the non-finite value appeared.
    site : str or None
        The sample or parameter site involved, or ``None`` when unknown.
    """

    step: int
    site: str | None

    def __init__(self, message: str, *, step: int, site: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.site = site

    def __reduce__(self) -> tuple[object, ...]:
        # The default reduce replays only ``args`` and would lose the keyword-only ``step`` and
        # ``site``, so the error could not cross a process boundary (multiprocessing, pickle).
        return (_make_non_finite_error, (str(self), self.step, self.site))


def _make_non_finite_error(message: str, step: int, site: str | None) -> NonFiniteError:
    return NonFiniteError(message, step=step, site=site)


class TrainingInterrupted(PPGenError):
    """The user interrupted a fit (Ctrl-C); a checkpoint was written if the fit had a run directory.

    Attributes
    ----------
    step : int
        Steps completed when the run stopped.
    """

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_interrupted, (str(self), self.step))


def _rebuild_interrupted(message: str, step: int) -> TrainingInterrupted:
    return TrainingInterrupted(message, step=step)


class RunDirError(PPGenError, ValueError):
    """A run directory is missing, incomplete, or belongs to a different run than expected."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Build the part of an error message that proposes names close to a misspelt one.

    Parameters
    ----------
    name : str
        The name that was not found.
    choices : iterable of str
        The names that do exist.

    Returns
    -------
    str
        ``"did you mean 'coin'? Available: coin, linreg"`` when some choice is close to `name`,
        ``"Available: coin, linreg"`` when none is, and ``"none are available"`` when `choices` is
        empty. Choices are listed sorted and without a trailing full stop, so the caller can end
        the sentence.

    Examples
    --------
    >>> suggest("con", ["linreg", "coin"])
    "did you mean 'coin'? Available: coin, linreg"
    """
    options = sorted(set(choices))
    if not options:
        return "none are available"
    listing = "Available: " + ", ".join(options)
    close = difflib.get_close_matches(name, options, n=3)
    if not close:
        return listing
    quoted = " or ".join(repr(c) for c in close)
    return f"did you mean {quoted}? {listing}"
