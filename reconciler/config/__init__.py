"""config: classroom.yaml and site.yaml as pydantic models, loaded with line/column positions.

Imports nothing else of reconciler.  ``classroom`` and ``site`` are the models,
``load`` reads and validates whole files (every problem at once, as
file:line:column: field.path: message), ``yamlsrc`` keeps the positions and
``sizes`` parses "512Mi".  The JSON schema in schemas/ is generated from these
models (``reconcile schema``).
"""
