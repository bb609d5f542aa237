"""The old import path of :mod:`yws.model.evaluator`.

Model versions registered before the package was split into subpackages name ``yws.engine``
as their pyfunc ``loader_module``; this keeps them loading. New code imports
:mod:`yws.model.evaluator`.
"""

from yws.model.evaluator import *  # noqa: F403
from yws.model.evaluator import _load_pyfunc  # noqa: F401  (the pyfunc loader MLflow calls)
