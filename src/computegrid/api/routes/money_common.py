"""Shared pieces of the money routes: writing transactions, Idempotency-Key and answers to keyed requests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Header
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from computegrid.api.deps import AppState
from computegrid.services.billing.idempotency import Replay
from computegrid.services.errors import Conflict

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=128,
    description="Repeat a request with the same key to get the same answer without moving money twice")]


@contextmanager
def writing(state: AppState) -> Iterator[Session]:
    """One transaction; a unique-key race with a concurrent request becomes 409 (nothing was written)."""
    try:
        with state.db.transaction() as session:
            yield session
    except IntegrityError as exc:
        raise Conflict("a concurrent request wrote the same record first; nothing was done. "
                       "Retry (with the same Idempotency-Key) to see its outcome") from exc


def answer(replay: Replay) -> JSONResponse:
    """The keyed request's answer; a repeat says so in the Idempotent-Replayed header."""
    headers = {"Idempotent-Replayed": "true"} if replay.replayed else None
    return JSONResponse(replay.body, status_code=replay.status, headers=headers)
