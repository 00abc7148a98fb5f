# The packaged JupyterHub configuration: `reconcile hub` runs `jupyterhub -f <this file>`.
# Everything comes from site.yaml ($RECONCILE_SITE) and classroom.yaml ($RECONCILE_CLASSROOM).
from reconciler.hub.config import configure

configure(c)  # noqa: F821 - `c` is provided by JupyterHub
