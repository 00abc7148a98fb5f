"""Declarative Jupyter classroom: classroom.yaml -> accounts, quota volumes, mounts."""
