"""JupyterHub + DockerSpawner configured from the same classroom.yaml and site.yaml."""
