"""The classroom on Kubernetes: what Zero to JupyterHub needs, rendered from classroom.yaml (`reconcile k8s render`)."""
