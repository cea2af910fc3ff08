"""The site agent: inventory, heartbeats, assignments, logs and usage. See agent.py."""
