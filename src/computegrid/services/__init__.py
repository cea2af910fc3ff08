"""Use cases: load state, call core, persist in one transaction, record events."""
