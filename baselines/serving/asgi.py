"""The app factory uvicorn's worker processes import (``scripts/serve.py --workers N``).

The serving YAML path and the command line's overrides travel in environment variables (uvicorn starts each worker
by import string, so it cannot pass a config object).
"""

from __future__ import annotations

import json
import os

CONFIG_VARIABLE, OVERRIDES_VARIABLE = "MMQ_SERVING_CONFIG", "MMQ_SERVING_OVERRIDES"


def serving_config(path: str, overrides: dict | None = None):
    """The :class:`~baselines.serving.config.ServingConfig` of a YAML plus overrides (unknown keys are errors)."""
    import baselines  # noqa: F401  (registers the run kinds)
    from baselines.serving.config import ServingConfig
    from mmq.config import load_config

    return load_config(ServingConfig, path, **(overrides or {}))


def build():
    """A worker's app, from :data:`CONFIG_VARIABLE` and :data:`OVERRIDES_VARIABLE`."""
    from baselines.serving.config import create_served_app
    from mmq.cli import setup

    setup()
    if CONFIG_VARIABLE not in os.environ:
        raise RuntimeError(f"{CONFIG_VARIABLE} is not set: start workers through scripts/serve.py")
    return create_served_app(serving_config(os.environ[CONFIG_VARIABLE],
                                            json.loads(os.environ.get(OVERRIDES_VARIABLE, "{}"))))
