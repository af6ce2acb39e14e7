"""Inference methods, one module each, registered through the ``ppgen.inference`` entry points."""

from ppgen.inference.base import FitRequest, FitResult, Method

__all__ = ["FitRequest", "FitResult", "Method"]
