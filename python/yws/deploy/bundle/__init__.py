"""The Asset Bundle in ``jobs/``: loaded, typed with ``databricks-bundles`` and cross-checked.

``yws bundle validate`` is what can be proved offline, per target:

- every job parses into the typed classes (an unknown or misspelt field fails), and the
  references between parts hold — task keys and ``depends_on``, environment keys,
  ``${var.…}`` and ``{{job.parameters.…}}`` references, the flags each entry point accepts,
  the entry points the wheel declares;
- every local path resolves the way the Databricks CLI resolves it (github.com/databricks/cli:
  ``bundle/config/mutator/normalize_paths.go``, ``translate_paths.go``,
  ``bundle/libraries/expand_glob_references.go``, ``local_path.go``,
  ``bundle/artifacts/prepare.go``, ``bundle/config/loader/process_root_includes.go``):
  includes relative to the bundle root; an artifact's ``path`` and ``files`` and a job's
  libraries, environment dependencies and task files relative to the folder of the file that
  defines them; a library glob must match a file once the artifacts are built (the build's
  output is predicted from the artifact, so no build is needed to check);
- identities: each target runs its jobs as a service principal (``run_as``), named by
  application id; a service principal or warehouse id is either a documented ``lookup`` by name
  or a real id — never a placeholder, an all-zero id or a display name; the grants in ``sql/``
  go to the principal the jobs run as;
- who may choose what: a job that others may run (``CAN_MANAGE_RUN``) takes catalog, schema,
  volume and principals from bundle variables, never from job parameters (a runner could point
  it elsewhere), and passes no keyword arguments a job parameter could override;
- a task that retries ``yws-score`` has a check task without retries before it, so an input
  error fails once instead of being retried;
- ``sql/`` renders and every statement and grant is one this tool understands (a privilege
  must exist and apply to what it is granted on); the MLflow temp volume the tasks name is one
  ``sql/`` creates.
"""

from __future__ import annotations

from yws.deploy.bundle.checks import check, validate
from yws.deploy.bundle.model import (
    Bundle,
    BundleError,
    default_root,
    load,
    local_variables,
    substitute,
    target_values,
    wheel_entry_points,
)

__all__ = ["Bundle", "BundleError", "check", "default_root", "load", "local_variables",
           "substitute", "target_values", "validate", "wheel_entry_points"]
