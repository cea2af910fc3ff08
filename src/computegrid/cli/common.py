"""What every CLI command shares: the consoles, the client from saved credentials, error handling, yuan."""

from __future__ import annotations

from typing import Any

import httpx
import typer
from rich.console import Console

from computegrid.client import ApiError, Client

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the terminal width


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def client() -> Client:
    try:
        return Client.from_config()
    except ApiError as exc:
        raise fail(exc.detail) from exc


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a client call, turning API and connection errors into a clear message and exit 1."""
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        lines = [f"{exc.detail} (HTTP {exc.status})"]
        if isinstance(exc.problems, list) and len(exc.problems) > 1:
            lines += [f"  - {p['field']}: {p['message']}" for p in exc.problems]
        raise fail("\n".join(lines)) from exc
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the computegrid API ({exc}); is 'computegrid up' running?") from exc


def yuan(fen: int | None) -> str:
    """Integer fen as ¥ with two decimals, e.g. 123456 -> ¥1,234.56, -50 -> -¥0.50."""
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"
