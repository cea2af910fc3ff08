"""The typed HTTP client: the Python SDK, used by the CLI, the agent and the tests."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "computegrid"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


@dataclass(frozen=True)
class Credentials:
    url: str
    api_key: str


def write_private_file(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by the owner only (it holds a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def save_credentials(creds: Credentials, path: Path | None = None) -> Path:
    """Write the CLI's default URL and key, readable by the owner only."""
    target = path or credentials_path()
    write_private_file(target, json.dumps({"url": creds.url, "api_key": creds.api_key}, indent=2) + "\n")
    return target


def load_credentials(path: Path | None = None) -> Credentials | None:
    """COMPUTEGRID_URL / COMPUTEGRID_API_KEY override the credentials file."""
    data: dict[str, str] = {}
    target = path or credentials_path()
    if target.exists():
        data = json.loads(target.read_text())
    url = os.environ.get("COMPUTEGRID_URL") or data.get("url") or DEFAULT_URL
    key = os.environ.get("COMPUTEGRID_API_KEY") or data.get("api_key")
    return Credentials(url=url, api_key=key) if key else None


class ApiError(Exception):
    """A 4xx/5xx answer; `detail` is the server's reason."""

    def __init__(self, status: int, detail: str, problems: Any = None):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.problems = problems


class Client:
    def __init__(self, url: str, api_key: str | None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    @classmethod
    def from_config(cls) -> Client:
        creds = load_credentials()
        if creds is None:
            raise ApiError(401, f"no API key: run 'computegrid up' first, or set COMPUTEGRID_API_KEY "
                                f"(looked in {credentials_path()})")
        return cls(creds.url, creds.api_key)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                detail, problems = body.get("detail", response.text), body.get("problems")
            except ValueError:
                detail, problems = response.text, None
            if isinstance(detail, list):  # FastAPI's own validation errors
                detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
            raise ApiError(response.status_code, str(detail), problems)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -- system
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/healthz")
        return result

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/me")
        return result

    # -- accounts
    def create_tenant(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/tenants", json={"name": name})
        return result

    def tenants(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/tenants")
        return result

    def tenant(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/tenants/{name}")
        return result

    def set_tenant_limits(self, name: str, *, priority_classes: list[str] | None = None,
                          fair_share: int | None = None) -> dict[str, Any]:
        """Operator: a tenant's allowed priority classes and/or fair-share weight (None keeps the current one)."""
        body = {k: v for k, v in (("priority_classes", priority_classes), ("fair_share", fair_share))
                if v is not None}
        result: dict[str, Any] = self._call("PATCH", f"/v1/tenants/{name}", json=body)
        return result

    def create_provider(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/providers", json={"name": name})
        return result

    def create_user(self, name: str, role: str, *, tenant: str | None = None,
                    provider: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/users", json={"name": name, "role": role,
                                                                      "tenant": tenant, "provider": provider})
        return result

    # -- sites and nodes
    def create_site(self, name: str, *, region: str, tier: str, backend: str = "local",
                    electricity_fen_per_kwh: float = 0, provider: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/sites", json={
            "name": name, "region": region, "tier": tier, "backend": backend,
            "electricity_fen_per_kwh": electricity_fen_per_kwh, "provider": provider})
        return result

    def sites(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/sites")
        return result

    def nodes(self, site: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/nodes", params={"site": site} if site else None)
        return result

    # -- regions and round trips
    def regions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/regions")
        return result

    def region_rtts(self, from_region: str | None = None) -> list[dict[str, Any]]:
        """Round trips (ms) the scheduler routes by; from one region (nearest first) or every pair."""
        result: list[dict[str, Any]] = self._call("GET", "/v1/regions/rtt",
                                                  params={"from": from_region} if from_region else None)
        return result

    def set_region_rtt(self, region_a: str, region_b: str, rtt_ms: int, *, source: str = "",
                       new_region: bool = False) -> dict[str, Any]:
        """Operator: override or add the round trip between two regions (`new_region` to add a region)."""
        result: dict[str, Any] = self._call("PUT", "/v1/regions/rtt", json={
            "region_a": region_a, "region_b": region_b, "rtt_ms": rtt_ms, "source": source,
            "new_region": new_region})
        return result

    def clear_region_rtt(self, region_a: str, region_b: str) -> dict[str, Any]:
        """Operator: drop an override; the pair goes back to the built-in estimate."""
        result: dict[str, Any] = self._call("DELETE", f"/v1/regions/rtt/{quote(region_a, safe='')}/"
                                                      f"{quote(region_b, safe='')}")
        return result

    # -- jobs
    def submit(self, spec: dict[str, Any] | str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a spec dict (sent as JSON) or YAML text (sent as application/yaml)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if isinstance(spec, str):
            headers["Content-Type"] = "application/yaml"
            result: dict[str, Any] = self._call("POST", "/v1/jobs", content=spec.encode(), headers=headers)
        else:
            result = self._call("POST", "/v1/jobs", json=spec, headers=headers)
        return result

    def jobs(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        result: list[dict[str, Any]] = self._call("GET", "/v1/jobs", params=params)
        return result

    def job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}")
        return result

    def cancel(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def logs(self, job_id: int, *, offset: int = 0, attempt: int | None = None,
             rank: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"offset": offset}
        if attempt is not None:
            params["attempt"] = attempt
        if rank is not None:
            params["rank"] = rank
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}/logs", params=params)
        return result

    def events(self, job_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/v1/jobs/{job_id}/events")
        return result

    # -- agent
    def register_node(self, *, site: str, name: str, cpu_milli: int, memory_mb: int,
                      devices: list[dict[str, Any]], capabilities: dict[str, Any] | None = None) -> int:
        """Register (or refresh) a node; `capabilities` (EngineCapabilities.to_dict) declare the site's engine."""
        body: dict[str, Any] = {"site": site, "name": name, "cpu_milli": cpu_milli, "memory_mb": memory_mb,
                                "devices": devices}
        if capabilities is not None:
            body["capabilities"] = capabilities
        result = self._call("POST", "/v1/agent/register", json=body)
        return int(result["node_id"])

    def heartbeat(self, node_id: int, telemetry: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        result = self._call("POST", "/v1/agent/heartbeat", json={"node_id": node_id, "telemetry": telemetry or []})
        assignments: list[dict[str, Any]] = result["assignments"]
        return assignments

    def report_state(self, job_id: int, *, node_id: int, attempt: int, state: str, exit_code: int | None = None,
                     reason: str = "", at_ms: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/agent/jobs/{job_id}/state", json={
            "node_id": node_id, "attempt": attempt, "state": state, "exit_code": exit_code, "reason": reason,
            "at_ms": at_ms})
        return result

    def append_log(self, job_id: int, *, node_id: int, attempt: int, offset: int, data: str,
                   rank: int | None = None) -> int:
        body: dict[str, Any] = {"node_id": node_id, "attempt": attempt, "offset": offset, "data": data}
        if rank is not None:
            body["rank"] = rank
        result = self._call("POST", f"/v1/agent/jobs/{job_id}/logs", json=body)
        return int(result["next_offset"])

    def report_usage(self, job_id: int, *, node_id: int, attempt: int, intervals: list[dict[str, Any]]) -> int:
        result = self._call("POST", f"/v1/agent/jobs/{job_id}/usage", json={
            "node_id": node_id, "attempt": attempt, "intervals": intervals})
        return int(result["recorded"])

    # -- money
    def _keyed(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._call("POST", path, json=body, headers=headers)
        return result

    def _text(self, path: str, params: dict[str, Any] | None = None) -> str:
        response = self.http.get(path, params={k: v for k, v in (params or {}).items() if v is not None})
        if response.status_code >= 400:
            self._call("GET", path, params=params)  # raises ApiError with the server's reason
        return response.text

    def wallet(self, tenant: str | None = None, *, as_of_ms: int | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("tenant", tenant), ("as_of_ms", as_of_ms)) if v is not None}
        result: dict[str, Any] = self._call("GET", "/v1/wallet", params=params)
        return result

    def top_up(self, tenant: str, amount_fen: int, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._keyed("/v1/topups", {"tenant": tenant, "amount_fen": amount_fen}, idempotency_key)

    def set_tenant_profile(self, tenant: str, *, region: str = "", industry_tags: list[str] | None = None,
                           credit_limit_fen: int = 0, affiliated_providers: list[str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", f"/v1/tenants/{tenant}/profile", json={
            "region": region, "industry_tags": industry_tags or [], "credit_limit_fen": credit_limit_fen,
            "affiliated_providers": affiliated_providers or []})
        return result

    def tenant_profile(self, tenant: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/tenants/{tenant}/profile")
        return result

    def statement_csv(self, account: str | None = None, *, since_ms: int | None = None,
                      until_ms: int | None = None) -> str:
        return self._text("/v1/ledger/statement", {"account": account, "since_ms": since_ms, "until_ms": until_ms})

    def ledger_balances(self, *, as_of_ms: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/ledger/balances",
                                            params={"as_of_ms": as_of_ms} if as_of_ms is not None else None)
        return result

    def set_prices(self, provider: str, schedule: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", f"/v1/prices/{provider}", json=schedule)
        return result

    def prices(self, provider: str | None = None) -> Any:
        return self._call("GET", f"/v1/prices/{provider}" if provider else "/v1/prices")

    def products(self, *, include_retired: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/products",
                                                  params={"include_retired": include_retired})
        return result

    def create_product(self, product: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/products", json=product)
        return result

    def retire_product(self, product_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/products/{product_id}/retire")
        return result

    def buy(self, product_id: str, *, quantity: int = 1, tenant: str | None = None,
            idempotency_key: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"product_id": product_id, "quantity": quantity}
        if tenant is not None:
            body["tenant"] = tenant
        return self._keyed("/v1/purchases", body, idempotency_key)

    def holdings(self, tenant: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/holdings", params={"tenant": tenant} if tenant else None)
        return result

    def refund_holding(self, holding_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/holdings/{quote(holding_id, safe='')}/refund")
        return result

    def expire_holdings(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/holdings/expire")
        return result

    def voucher_programs(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/voucher-programs")
        return result

    def create_voucher_program(self, program: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/voucher-programs", json=program)
        return result

    def fund_voucher_program(self, program_id: str, amount_fen: int, *,
                             idempotency_key: str | None = None) -> dict[str, Any]:
        return self._keyed(f"/v1/voucher-programs/{program_id}/fund", {"amount_fen": amount_fen}, idempotency_key)

    def grant_voucher(self, program_id: str, tenant: str, *, amount_fen: int | None = None,
                      expires_ms: int | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._keyed("/v1/voucher-grants", {"program_id": program_id, "tenant": tenant,
                                                  "amount_fen": amount_fen, "expires_ms": expires_ms},
                           idempotency_key)

    def voucher_grants(self, tenant: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/voucher-grants",
                                                  params={"tenant": tenant} if tenant else None)
        return result

    def voucher_report_csv(self, program_id: str) -> str:
        return self._text(f"/v1/voucher-programs/{program_id}/report")

    def charges(self, *, tenant: str | None = None, job_id: int | None = None, status: str | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("tenant", tenant), ("job_id", job_id), ("status", status), ("limit", limit))
                  if v is not None}
        result: list[dict[str, Any]] = self._call("GET", "/v1/charges", params=params)
        return result

    def run_invoices(self, period: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/invoices/run", json={"period": period})
        return result

    def invoices(self, *, tenant: str | None = None, period: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("tenant", tenant), ("period", period)) if v is not None}
        result: list[dict[str, Any]] = self._call("GET", "/v1/invoices", params=params)
        return result

    def invoice(self, invoice_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/invoices/{invoice_id}")
        return result

    def invoice_csv(self, invoice_id: int) -> str:
        return self._text(f"/v1/invoices/{invoice_id}/csv")

    def receivables(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/receivables")
        return result

    def start_payout(self, provider: str, amount_fen: int, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._keyed("/v1/payouts", {"provider": provider, "amount_fen": amount_fen}, idempotency_key)

    def confirm_payout(self, payout_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/payouts/{payout_id}/confirm")
        return result

    def fail_payout(self, payout_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/payouts/{payout_id}/fail")
        return result

    def payouts(self, provider: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/payouts", params={"provider": provider} if provider
                                                  else None)
        return result

    # -- market
    def _market_list(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", path, params={k: v for k, v in params.items()
                                                                       if v is not None})
        return result

    def create_offer(self, offer: dict[str, Any]) -> dict[str, Any]:
        """Offer devices (site, model, devices, floor_fen_per_du, kind spot|reserved, window_*_ms)."""
        result: dict[str, Any] = self._call("POST", "/v1/market/offers", json=offer)
        return result

    def offers(self, *, kind: str | None = None, state: str | None = None, site: str | None = None,
               model: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
        return self._market_list("/v1/market/offers", {"kind": kind, "state": state, "site": site, "model": model,
                                                       "region": region})

    def cancel_offer(self, offer_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/market/offers/{offer_id}")
        return result

    def create_bid(self, bid: dict[str, Any]) -> dict[str, Any]:
        """A job's spot bid ({job_id, limit_fen_per_du}) or a reserved bid ({kind: reserved, ...})."""
        result: dict[str, Any] = self._call("POST", "/v1/market/bids", json=bid)
        return result

    def bids(self, *, state: str | None = None, kind: str | None = None,
             tenant: str | None = None) -> list[dict[str, Any]]:
        return self._market_list("/v1/market/bids", {"state": state, "kind": kind, "tenant": tenant})

    def cancel_bid(self, bid_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/market/bids/{bid_id}")
        return result

    def run_market_round(self, *, notice_ms: int | None = None) -> dict[str, Any]:
        body = {} if notice_ms is None else {"notice_ms": notice_ms}
        result: dict[str, Any] = self._call("POST", "/v1/market/rounds", json=body)
        return result

    def spot_index(self, *, model: str | None = None, region: str | None = None, since_ms: int | None = None,
                   until_ms: int | None = None) -> list[dict[str, Any]]:
        return self._market_list("/v1/market/spot-index", {"model": model, "region": region, "since": since_ms,
                                                           "until": until_ms})

    def quote(self, ask: dict[str, Any]) -> dict[str, Any]:
        """Quote a job spec ({"job": spec}) or a request ({"devices": 2, "models": "A100", ...})."""
        result: dict[str, Any] = self._call("POST", "/v1/market/quote", json=ask)
        return result

    def buy_reservation(self, offer_id: int, devices: int, start_ms: int, end_ms: int, *,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._call("POST", "/v1/reservations", headers=headers, json={
            "offer_id": offer_id, "devices": devices, "start_ms": start_ms, "end_ms": end_ms})
        return result

    def reservations(self, *, tenant: str | None = None) -> list[dict[str, Any]]:
        return self._market_list("/v1/reservations", {"tenant": tenant})

    def resell_reservation(self, reservation_id: int, devices: int, floor_fen_per_du: int, *,
                           from_ms: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"devices": devices, "floor_fen_per_du": floor_fen_per_du}
        if from_ms is not None:
            body["from_ms"] = from_ms
        result: dict[str, Any] = self._call("POST", f"/v1/reservations/{reservation_id}/resell", json=body)
        return result
