"""roster: changes to classroom.yaml itself, by people (the teacher API, `reconcile import-csv`).

``edit`` is the one comment-preserving writer (validate the whole candidate
file, then an atomic rename, under a lock); ``csv_import`` reads the CSV files
schools export and makes usernames.  Imports ``config`` and ``host``.
"""
