"""Sphinx configuration: MyST-NB executes the tutorials (jupytext MyST notebooks) at build time.

``PPGEN_SMOKE=1`` (or ``CI``) in the environment makes the tutorials use small step counts; the
notebook kernels inherit the build's environment. ``make docs`` builds with ``-W``, so any warning
(a broken docstring, a failing cell) fails the build.
"""

from __future__ import annotations

import os

import ppgen  # installed (editable) by ``make setup``

project = "ppgen"
author = "the ppgen authors"
copyright = "2026, the ppgen authors"
release = ppgen.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "README.md"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# -- MyST and notebook execution -----------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
# Every build runs every tutorial afresh: an example that CI never runs is not an example.
nb_execution_mode = "force"
nb_execution_timeout = int(os.environ.get("PPGEN_DOCS_TIMEOUT", "900"))
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- API reference from docstrings ---------------------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# Attributes sections become :ivar: fields, so dataclass fields are not described twice.
napoleon_use_ivar = True
napoleon_use_rtype = False

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"ppgen {release}"
html_theme_options = {"description": "One generative model, two backends, several methods."}
