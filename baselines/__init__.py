"""The course systems as comparators to MMQ; importing this package registers their experiment kinds."""

from baselines import registry as _registry  # noqa: F401  (registers the baseline kinds in mmq.registry)
