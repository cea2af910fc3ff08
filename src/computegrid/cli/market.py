"""The market from the terminal: quotes, offers, bids, the spot index, reserved blocks, rounds.

Prices are whole fen per du; totals are shown as ¥ with two decimals. Times are epoch milliseconds
or ISO 8601 with an offset (`2027-01-15T10:00+08:00`). Register with `market.register(app)` in
cli/main.py.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from computegrid.cli.common import call as _call
from computegrid.cli.common import client as _client
from computegrid.cli.common import fail, out, yuan

offers_app = typer.Typer(help="Open offers; providers create and withdraw their own.", invoke_without_command=True)
bids_app = typer.Typer(help="Your bids: interruptible jobs' spot bids and reserved bids.", invoke_without_command=True)
reservations_app = typer.Typer(help="Your reserved blocks: buy one, resell unused time.",
                               invoke_without_command=True)
market_app = typer.Typer(help="Market rounds (operators).", no_args_is_help=True)










def parse_time(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time with an offset, as epoch milliseconds."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"a time is epoch milliseconds or ISO 8601 like 2027-01-15T10:00+08:00, "
                                 f"got {text!r}") from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"give the time's offset (e.g. +08:00): {text!r}")
    return int(moment.timestamp() * 1000)


def read_mapping(file: Path) -> dict[str, Any]:
    """A YAML or JSON mapping from a file ('-' reads stdin); a clear error otherwise."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}", 2) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise fail(f"{file} is not valid YAML{where}", 2) from exc
    if not isinstance(data, dict):
        raise fail(f"{file} must hold a mapping of fields", 2)
    return data


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def _window(o: dict[str, Any], start: str = "window_start", end: str = "window_end") -> str:
    return f"{o[start]} - {o[end]}" if o.get(start) else "now"


def _offers_table(found: list[dict[str, Any]], title: str = "Offers") -> Table:
    return _table(title, ["ID", "KIND", "PROVIDER", "SITE", "REGION", "TIER", "MODEL", "DEVICES", "HELD", "FLOOR",
                          "ON DEMAND", "WINDOW", "STATE"],
                  [[str(o["id"]), o["kind"], o["provider"], o["site"], o["region"], o["tier"], o["model"],
                    str(o["devices"]), str(o["held_devices"]), str(o["floor_fen_per_du"]),
                    "-" if o["on_demand_fen_per_du"] is None else str(o["on_demand_fen_per_du"]), _window(o),
                    o["state"]] for o in found])


# -- quote and the spot index


def quote(file: Annotated[Path, typer.Argument(help="A job spec (YAML/JSON), or a request: devices, models, "
                                                    "regions, tier, duration_ms.")],
          start: Annotated[str | None, typer.Option("--start", help="When a reserved block would start.")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print the raw answer.")] = False) -> None:
    """What capacity for a job would cost now: on demand, spot and reserved. Buys nothing."""
    data = read_mapping(file)
    ask: dict[str, Any] = dict(data) if "devices" in data and not ({"run", "image"} & set(data)) else {"job": data}
    if start is not None:
        ask["start_ms"] = parse_time(start)
    answer = _call(_client().quote, ask)
    if as_json:
        out.print_json(json.dumps(answer))
        return
    req = answer["request"]
    title = (f"Quote: {req['devices']} x {'|'.join(req['models']) or 'any model'} for {req['hours']} h"
             + (f" in {', '.join(req['regions'])}" if req["regions"] else ""))
    out.print(_table(title, ["HOW", "SITE", "TIER", "MODEL", "REGION", "FEN/DU", "DU/H", "ESTIMATE", "NOTE"],
                     [[o["kind"], o["site"], o["tier"], o["model"], o["region"], str(o["price_fen_per_du"]),
                       o["du_per_hour"], yuan(o["estimated_total_fen"]), o["note"]] for o in answer["options"]]))
    if answer["explanation"]:
        out.print(answer["explanation"], highlight=False)


def spot_index(model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
               region: Annotated[str | None, typer.Option(help="Only this region.")] = None,
               since: Annotated[str | None, typer.Option(help="History from this time.")] = None,
               history: Annotated[bool, typer.Option("--history", help="Every price change, not just the latest.")]
               = False) -> None:
    """The spot price per accelerator class and region, and its history."""
    series = _call(_client().spot_index, model=model, region=region,
                   since_ms=parse_time(since) if since is not None else None)
    if not series:
        out.print("no spot trades yet")
        return
    rows = []
    for s in series:
        points = s["points"] if history else [s["latest"]]
        rows += [[s["model"], s["region"], p["at"], str(p["price_fen_per_du"])] for p in points if p]
    out.print(_table("Spot index (fen/du)", ["MODEL", "REGION", "SINCE", "PRICE"], rows))


# -- offers


@offers_app.callback()
def offers_list(ctx: typer.Context, kind: Annotated[str | None, typer.Option(help="spot, reserved or resale")] = None,
                site: Annotated[str | None, typer.Option()] = None, model: Annotated[str | None, typer.Option()] = None,
                region: Annotated[str | None, typer.Option()] = None,
                state: Annotated[str | None, typer.Option(help="open (default) or cancelled")] = None) -> None:
    """List open offers (anyone)."""
    if ctx.invoked_subcommand is None:
        out.print(_offers_table(_call(_client().offers, kind=kind, state=state, site=site, model=model,
                                      region=region)))


@offers_app.command("create")
def offers_create(file: Annotated[Path, typer.Argument(help="YAML: site, model, devices, floor_fen_per_du, kind "
                                                            "(spot|reserved), window_start_ms/window_end_ms.")]
                  ) -> None:
    """Offer capacity of one of your sites (providers)."""
    body = read_mapping(file)
    for key in ("window_start", "window_end"):
        if key in body:
            body[f"{key}_ms"] = parse_time(str(body.pop(key)))
    out.print(_offers_table([_call(_client().create_offer, body)], "Offer created"))


@offers_app.command("cancel")
def offers_cancel(offer_id: int) -> None:
    """Withdraw an open offer of yours."""
    made = _call(_client().cancel_offer, offer_id)
    out.print(f"offer {made['id']} withdrawn")


# -- bids


def _bids_table(found: list[dict[str, Any]]) -> Table:
    return _table("Bids", ["ID", "KIND", "JOB", "DEVICES", "LIMIT", "MODELS", "WINDOW", "STATE", "WHY"],
                  [[str(b["id"]), b["kind"], str(b["job_id"] or "-"), str(b["devices"]),
                    "posted price" if b["limit_fen_per_du"] is None else str(b["limit_fen_per_du"]),
                    "|".join(b["models"]) or "any", "now" if not b["window_start_ms"] else
                    f"{b['window_start_ms']} - {b['window_end_ms']}", b["state"], b["state_reason"]] for b in found])


@bids_app.callback()
def bids_list(ctx: typer.Context, state: Annotated[str | None, typer.Option()] = None,
              kind: Annotated[str | None, typer.Option(help="spot or reserved")] = None) -> None:
    """List your bids."""
    if ctx.invoked_subcommand is None:
        out.print(_bids_table(_call(_client().bids, state=state, kind=kind)))


@bids_app.command("create")
def bids_create(file: Annotated[Path, typer.Argument(help="YAML: {job_id, limit_fen_per_du} for a spot bid, or "
                                                          "{kind: reserved, devices, limit_fen_per_du, models, "
                                                          "window_start, window_end} for a block.")]) -> None:
    """Set an interruptible job's spot bid, or bid for a reserved block."""
    body = read_mapping(file)
    for key in ("window_start", "window_end"):
        if key in body:
            body[f"{key}_ms"] = parse_time(str(body.pop(key)))
    out.print(_bids_table([_call(_client().create_bid, body)]))


@bids_app.command("cancel")
def bids_cancel(bid_id: int) -> None:
    """Withdraw an open reserved bid."""
    _call(_client().cancel_bid, bid_id)
    out.print(f"bid {bid_id} withdrawn")


# -- reservations


def _blocks_table(found: list[dict[str, Any]]) -> Table:
    return _table("Reserved blocks", ["ID", "SITE", "MODEL", "DEVICES", "FROM", "TO", "FEN/DU", "COST", "IN USE",
                                      "RESOLD", "PHASE"],
                  [[str(r["id"]), r["site"], r["model"], str(r["devices"]), r["start"], r["end"],
                    str(r["price_fen_per_du"]), yuan(r["cost_fen"]), str(r["devices_in_use"]),
                    str(r["resold_devices"]), r["phase"]] for r in found])


@reservations_app.callback()
def reservations_list(ctx: typer.Context) -> None:
    """List your reserved blocks."""
    if ctx.invoked_subcommand is None:
        out.print(_blocks_table(_call(_client().reservations)))


@reservations_app.command("buy")
def reservations_buy(offer_id: Annotated[int, typer.Argument(help="A reserved or resale offer.")],
                     devices: Annotated[int, typer.Option(help="Whole devices.")],
                     start: Annotated[str, typer.Option("--from", help="Start of the block.")],
                     end: Annotated[str, typer.Option("--to", help="End of the block.")],
                     key: Annotated[str | None, typer.Option("--key", help="Idempotency key (default: new).")]
                     = None) -> None:
    """Buy devices x a future window from an offer, paid now from your wallet."""
    block = _call(_client().buy_reservation, offer_id, devices, parse_time(start), parse_time(end),
                  idempotency_key=key or uuid.uuid4().hex)
    out.print(_blocks_table([block]))
    out.print(f"paid {yuan(block['cost_fen'])}; wallet {yuan(block['wallet']['balance_fen'])}. Run a job on it with "
              f"`reservation: {block['id']}` in its spec.", highlight=False)


@reservations_app.command("resell")
def reservations_resell(reservation_id: int, devices: Annotated[int, typer.Option(help="Unused devices to sell.")],
                        floor: Annotated[int, typer.Option("--floor", help="Lowest fen/du you take.")],
                        start: Annotated[str | None, typer.Option("--from", help="From when (default now).")]
                        = None) -> None:
    """List unused devices of a block, from a time to its end, as a resale offer."""
    made = _call(_client().resell_reservation, reservation_id, devices, floor,
                 from_ms=parse_time(start) if start is not None else None)
    out.print(_offers_table([made], "Resale offer"))


# -- rounds


@market_app.command("round")
def market_round(notice_ms: Annotated[int | None, typer.Option(help="Preemption notice, ms.")] = None) -> None:
    """Run a market round now (operators) and show what it decided."""
    report = _call(_client().run_market_round, notice_ms=notice_ms)
    out.print(f"round at {report['at']}: {len(report['allocations'])} allocated, {len(report['preemptions'])} "
              f"preempted, {len(report['on_demand'])} on-demand holds, {len(report['reserved'])} reserved bids "
              f"settled", highlight=False)
    for p in report["prices"]:
        out.print(f"  {p['model']} in {p['region']}: {p['price_fen_per_du']} fen/du ({p['devices']} devices)",
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add the market commands to the main CLI."""
    app.command("quote")(quote)
    app.command("spot-index")(spot_index)
    for sub, name in ((offers_app, "offers"), (bids_app, "bids"), (reservations_app, "reservations"),
                      (market_app, "market")):
        app.add_typer(sub, name=name)
