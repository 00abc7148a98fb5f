"""service: the teacher page and REST API, a hub-managed service at /services/classroom/ (an entry point).

``teacher`` holds the plain functions behind it (reads are the engine's dry run;
roster writes go through ``roster.edit``), ``app`` the tornado handlers,
``openapi`` the document and its response models, ``static/`` the page.
"""
