"""credentials: new passwords from generation to the person.

``passwords`` generates them, ``outbox`` keeps each one root-only until it is
delivered (it is the drivers' CredentialStore), ``delivery`` e-mails them or
prints slips from ``templates/``.  Imports ``config`` and ``host``.
"""
