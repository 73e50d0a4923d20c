"""Render the deployment artifacts (Dockerfile, CI, compose, Kubernetes...) with crank.

`crank new-worker` renders them in-process; this hook does the same when the
template is used with plain `cookiecutter templates/worker`.
"""

import sys
from pathlib import Path

try:
    from crank.generate.scaffold import render_artifacts_into
except ImportError:
    print(
        "note: crank is not importable here; run `crank check --fix` in the new project "
        "to render its Dockerfile, CI workflow, compose and Kubernetes files",
        file=sys.stderr,
    )
else:
    render_artifacts_into(Path.cwd())
