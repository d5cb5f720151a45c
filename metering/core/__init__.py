"""Pure logic: no I/O, no database, no network. Nothing here imports storage, gateway or cli."""
