"""The terminal edge: Typer commands that talk to the API through client.py."""
