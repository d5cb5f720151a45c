"""Storage: the only layer that talks SQL. Timestamps are naive UTC; amounts integer nano-USD."""
