"""Finding the App a worker runs from a ``module:attribute`` string."""

from __future__ import annotations

import importlib
import os
import sys

from .app import App
from .exceptions import ConfigurationError


def load_app(spec: str) -> App:
    """Import ``package.module:app`` (the current directory is importable, as
    with ``python -m``) and return the App it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"--app must look like 'package.module:app', got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise ConfigurationError(f"{spec!r} is not a pgq.App (found {type(app).__name__})")
    app.import_spec = spec
    return app
