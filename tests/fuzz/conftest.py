"""Fuzz-test setup.

When a hypothesis test fails, its pytest plugin imports ``hypothesis.extra._patching``
(libcst, which uses the deprecated ``mypy_extensions.TypedDict``); with warnings as
errors that turns every fuzz failure into a pytest INTERNALERROR hiding the falsifying
example. Importing it once here, with that warning silenced, keeps failures readable.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: the plugin skips the patch too
        pass
