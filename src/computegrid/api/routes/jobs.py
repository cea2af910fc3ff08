"""Jobs: submit (JSON or YAML), list, show, cancel, logs and events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml
from fastapi import APIRouter, Header, Query, Request, Response, Security
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from computegrid.api.deps import API_KEY_HEADER, AppState, CurrentPrincipal, StateDep, get_principal, get_state
from computegrid.services import job_logs as logs_service
from computegrid.services import jobs
from computegrid.services.errors import Invalid
from computegrid.services.regions import check_user_region
from computegrid.services.views import iso, job_view

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def parse_body(raw: bytes, content_type: str) -> Any:
    """A spec dict from a JSON or YAML body; malformed input names its line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("the body must be UTF-8 text") from exc
    if content_type.split(";")[0].strip() in YAML_TYPES:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise Invalid(f"malformed YAML{where}: {problem}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


@router.post("", status_code=201, openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": {"type": "object"}}, "application/yaml": {"schema": {"type": "string"}}}}})
async def submit_job(request: Request, idempotency_key: str | None = Header(default=None),
                     _key: str | None = Security(API_KEY_HEADER)) -> Any:
    """Submit a job spec (see docs/job-spec.md). Returns the stored job; 200 for a repeated Idempotency-Key.

    Runs on the event loop: parsing and validation are cheap, and storing goes to the
    submission writer, which commits concurrent submissions together (group commit).
    """
    # The hot path resolves its dependencies by hand: FastAPI's resolver cost ~10% of a submission.
    state = await get_state(request)
    principal = await get_principal(request, state)
    data = parse_body(await request.body(), request.headers.get("content-type", "application/json"))
    spec = jobs.validate_spec(data, state.catalog)
    known_regions, rtt = state.regions()
    check_user_region(spec.routing.user_region, known_regions)
    try:
        submission = jobs.admit(principal=principal, spec=spec, shape=state.pool_shape(),
                                now_ms=state.clock.now_ms(), idempotency_key=idempotency_key, rtt=rtt)
    except Invalid:
        # A retry of a stored submission gets the stored job, even once its deadline has passed since.
        replayed = await run_in_threadpool(_replayed, state, principal, idempotency_key)
        if replayed is None:
            raise
        return JSONResponse(replayed, status_code=200)
    assert state.writer is not None
    stored = await asyncio.wrap_future(state.writer.submit(submission))
    if stored.created:
        if state.http is not None:
            state.http.submitted.inc()
        # Plain JSON of plain values: skip FastAPI's generic encoder on the hot path.
        return Response(json.dumps(jobs.pending_view(principal, spec, stored)), status_code=201,
                        media_type="application/json")
    return JSONResponse(await run_in_threadpool(_show, state, principal, stored.job_id), status_code=200)


def _replayed(state: AppState, principal: CurrentPrincipal, key: str | None) -> dict[str, Any] | None:
    """The job already stored under this tenant's Idempotency-Key, as `_show` gives it; None without one."""
    if key is None or principal.tenant_id is None:
        return None
    with state.db.reading() as session:
        job_id = jobs.job_id_for_key(session=session, tenant_id=principal.tenant_id, key=key)
    return None if job_id is None else _show(state, principal, job_id)


def _show(state: AppState, principal: CurrentPrincipal, job_id: int) -> dict[str, Any]:
    with state.db.reading() as session:
        return job_view(session, state.catalog, jobs.get_job(session=session, principal=principal, job_id=job_id),
                        detail=False)


@router.get("")
def list_jobs(principal: CurrentPrincipal, state: StateDep,
              state_filter: str | None = Query(default=None, alias="state", description="Only jobs in this state."),
              limit: int = Query(default=100, ge=1, le=1000)) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return [job_view(session, state.catalog, j, detail=False)
                for j in jobs.list_jobs(session=session, principal=principal, state=state_filter, limit=limit)]


@router.get("/{job_id}")
def show_job(job_id: int, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    with state.db.reading() as session:
        return job_view(session, state.catalog, jobs.get_job(session=session, principal=principal, job_id=job_id))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: int, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    with state.db.transaction() as session:
        job = jobs.cancel(session=session, principal=principal, job_id=job_id, now_ms=state.clock.now_ms())
        view = job_view(session, state.catalog, job, detail=False)
    if state.scheduler_wake is not None:
        state.scheduler_wake.capacity()
    return view


@router.get("/{job_id}/logs")
def job_logs(job_id: int, principal: CurrentPrincipal, state: StateDep, offset: int = 0,
             attempt: int | None = None, rank: int | None = None) -> dict[str, Any]:
    """One rank's output (`rank`), or, without one, a gang's ranks merged line by line as `[rank N] ...`."""
    with state.db.reading() as session:
        logs = logs_service.job_logs(session=session, principal=principal, job_id=job_id, offset=offset,
                                     attempt=attempt, rank=rank)
        job = jobs.get_job(session=session, principal=principal, job_id=job_id)
        return {"attempt": logs.attempt, "rank": logs.rank, "ranks": list(logs.ranks), "offset": logs.offset,
                "next_offset": logs.next_offset, "data": logs.data, "state": job.state}


@router.get("/{job_id}/events")
def job_events(job_id: int, principal: CurrentPrincipal, state: StateDep) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return [{"at": iso(e.at_ms), "from": e.from_state, "to": e.to_state, "reason": e.reason}
                for e in jobs.job_events(session=session, principal=principal, job_id=job_id)]
