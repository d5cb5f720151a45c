"""What the CLI and the admin API both do, once: each operation validates its input (the
rules live here, not in a command or a route), makes its change and writes its audit
row (``storage.audit``) in the caller's transaction, and returns the JSON-able shape both
print. ``actor`` is the admin token's name, or ``cli``."""
