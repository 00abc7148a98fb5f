# The packaged JupyterHub configuration: `reconcile hub` runs `jupyterhub -f <this file>`.
# Everything comes from site.yaml ($RECONCILE_SITE) and classroom.yaml ($RECONCILE_CLASSROOM); the operator's
# *.py in hub.extra_config_dir are loaded with traitlets' load_subconfig, as Z2JH and TLJH load jupyterhub_config.d.
from reconciler.hub.config import configure

configure(c, load_subconfig=load_subconfig)  # noqa: F821 - `c` and `load_subconfig` are provided by traitlets
