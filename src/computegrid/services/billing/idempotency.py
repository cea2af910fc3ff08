"""Idempotency-Key handling for money-moving requests.

A request made with a key is remembered with a digest of its body and the answer it got.
The same key with the same body gets that answer again and moves nothing; the same key
with a different body is refused (409, naming the key). Keys are scoped per user and
action, so two users' keys never collide. Callers lock the party the request moves money
for (tenant, provider or program row) first, so two concurrent retries run one at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.services.errors import Conflict, Invalid
from computegrid.store.models_billing import MoneyRequest

MAX_KEY = 128


@dataclass(frozen=True)
class Replay:
    """The answer to a money request: its status, its body, and whether it repeats an earlier answer."""

    status: int
    body: Any
    replayed: bool = False


def check_key(key: str | None) -> None:
    if key is not None and (not 0 < len(key) <= MAX_KEY or key != key.strip() or not key.isprintable()):
        raise Invalid(f"Idempotency-Key must be 1-{MAX_KEY} printable characters without surrounding spaces")


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _scope(user_id: int, action: str) -> str:
    return f"{user_id}:{action}"


def replay(*, session: Session, user_id: int, action: str, key: str | None, body: Any) -> Replay | None:
    """The earlier answer to this request, or None when the key is new (or absent)."""
    check_key(key)
    if key is None:
        return None
    row = session.scalar(select(MoneyRequest).where(MoneyRequest.scope == _scope(user_id, action),
                                                    MoneyRequest.key == key))
    if row is None:
        return None
    if row.digest != _digest(body):
        raise Conflict(f"Idempotency-Key {key!r} was already used for a different {action} request "
                       f"(made at {row.created_ms} ms); nothing was done. Use a new key for a new request")
    return Replay(status=row.status, body=json.loads(row.response), replayed=True)


def remember(*, session: Session, user_id: int, action: str, key: str | None, body: Any, status: int,
             response: Any, now_ms: int) -> None:
    """Store the answer to a keyed request, in the same transaction as its effects."""
    if key is None:
        return
    session.add(MoneyRequest(scope=_scope(user_id, action), key=key, digest=_digest(body), status=status,
                             response=json.dumps(response, sort_keys=True), created_ms=now_ms))
    session.flush()


def once(*, session: Session, user_id: int, action: str, key: str | None, body: Any, now_ms: int,
         run: Callable[[], Any], status: int = 201) -> Replay:
    """Run `run` unless this keyed request was answered before; remember its answer with the key."""
    earlier = replay(session=session, user_id=user_id, action=action, key=key, body=body)
    if earlier is not None:
        return earlier
    response = run()
    remember(session=session, user_id=user_id, action=action, key=key, body=body, status=status,
             response=response, now_ms=now_ms)
    return Replay(status=status, body=response)
