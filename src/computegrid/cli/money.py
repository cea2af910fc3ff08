"""Money from the terminal: wallet, top-ups, prices, products, holdings, vouchers, invoices, payouts, statements.

Amounts are shown as ¥ with two decimals, computed from integer fen. Amounts typed in are
exact: `--fen 1234` or `--yuan 12.34` (at most two decimals, parsed as a decimal string,
never as a float). Register with `money.register(app)` in cli/main.py.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from computegrid.cli.common import call as _call
from computegrid.cli.common import client as _client
from computegrid.cli.common import err, fail, out, yuan

_YUAN = re.compile(r"(\d{1,12})(?:\.(\d{1,2}))?")

products_app = typer.Typer(help="List prepaid products; operators create and retire them.", invoke_without_command=True)
holdings_app = typer.Typer(help="Your hour cards and packages; refund one.", invoke_without_command=True)
prices_app = typer.Typer(help="Providers' posted prices; post your own from a YAML file.", invoke_without_command=True)
vouchers_app = typer.Typer(help="Compute voucher programs, grants and redemption reports.",
                           invoke_without_command=True)
invoices_app = typer.Typer(help="Monthly invoices: list, show (or CSV), and (operators) run a month.",
                           invoke_without_command=True)
payouts_app = typer.Typer(help="Provider payouts: list; operators send, confirm or fail them.",
                          invoke_without_command=True)










def parse_yuan(text: str) -> int:
    """'12.34' -> 1234 fen, exactly; at most two decimals, no sign, no exponent."""
    match = _YUAN.fullmatch(text.strip())
    if not match:
        raise typer.BadParameter(f"yuan must look like 12 or 12.34 (at most two decimals), got {text!r}")
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def amount_fen(fen: int | None, yuan_text: str | None, *, required: bool = True) -> int | None:
    """The amount from exactly one of --fen and --yuan; positive."""
    if fen is not None and yuan_text is not None:
        raise fail("give the amount once: --fen or --yuan, not both", 2)
    if fen is None and yuan_text is None:
        if required:
            raise fail("give an amount: --fen N or --yuan 12.34", 2)
        return None
    value = fen if fen is not None else parse_yuan(yuan_text or "")
    if value <= 0:
        raise fail(f"the amount must be positive, got {value} fen", 2)
    return value


Fen = Annotated[int | None, typer.Option("--fen", help="Amount in whole fen (¥0.01).")]
Yuan = Annotated[str | None, typer.Option("--yuan", help="Amount in yuan, e.g. 12.34 (at most two decimals).")]
Key = Annotated[str | None, typer.Option("--key", help="Idempotency key (default: a new one for this command).")]


def _key(key: str | None) -> str:
    return key or uuid.uuid4().hex


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col.endswith(("¥", "DU", "FEN")) else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _wallet_table(w: dict[str, Any]) -> Table:
    return _table(f"Wallet of {w['tenant']}", ["BALANCE ¥", "PREPAID ¥", "CREDIT LIMIT ¥", "AVAILABLE ¥"],
                  [[yuan(w["balance_fen"]), yuan(w["prepaid_fen"]), yuan(w["credit_limit_fen"]),
                    yuan(w["available_fen"])]])


# -- single commands


def wallet(tenant: Annotated[str | None, typer.Option(help="Another tenant (operators).")] = None) -> None:
    """Your wallet: balance, prepaid cards, credit limit and what you can spend."""
    out.print(_wallet_table(_call(_client().wallet, tenant)))


def topup(tenant: Annotated[str, typer.Argument(help="Tenant to credit.")], fen: Fen = None, yuan_: Yuan = None,
          key: Key = None) -> None:
    """Operator: record money received from a tenant's bank into its wallet."""
    amount = amount_fen(fen, yuan_)
    assert amount is not None
    result = _call(_client().top_up, tenant, amount, idempotency_key=_key(key))
    out.print(f"topped up {tenant} with {yuan(amount)} ({result['key']})", highlight=False)
    out.print(_wallet_table(result["wallet"]))


def buy(product: Annotated[str, typer.Argument(help="Product id (see 'computegrid products').")],
        quantity: Annotated[int, typer.Option(min=1, max=1000, help="How many.")] = 1,
        tenant: Annotated[str | None, typer.Option(help="Buy for another tenant (operators).")] = None,
        key: Key = None) -> None:
    """Buy hour cards or a training package from your wallet."""
    result = _call(_client().buy, product, quantity=quantity, tenant=tenant, idempotency_key=_key(key))
    out.print(f"bought {quantity} x {product} for {yuan(result['amount_fen'])}", highlight=False)
    out.print(_holdings_table(result["holdings"]))
    out.print(_wallet_table(result["wallet"]))


def statement(account: Annotated[str | None, typer.Option(help="e.g. wallet:acme, receivable:p1 (default: yours).")]
              = None,
              since_ms: Annotated[int | None, typer.Option(help="From this time, epoch ms.")] = None,
              until_ms: Annotated[int | None, typer.Option(help="Before this time, epoch ms.")] = None,
              as_csv: Annotated[bool, typer.Option("--csv", help="Print the CSV as is.")] = False) -> None:
    """A ledger statement with a running balance."""
    text = _call(_client().statement_csv, account, since_ms=since_ms, until_ms=until_ms)
    if as_csv:
        sys.stdout.write(text)
        return
    rows = [line.split(",") for line in text.strip().splitlines()[1:]]
    table = _table(f"Statement{' of ' + account if account else ''}", ["TIME", "KEY", "AMOUNT ¥", "BALANCE ¥"],
                   [[r[0], r[1], yuan(int(r[-2])), yuan(int(r[-1]))] for r in rows if len(r) >= 5])
    out.print(table)


def charges(job: Annotated[int | None, typer.Option(help="Only this job.")] = None,
            status: Annotated[str | None, typer.Option(help="pending or invoiced.")] = None,
            tenant: Annotated[str | None, typer.Option(help="Another tenant (operators).")] = None) -> None:
    """Priced usage of ended job attempts, before and after invoicing."""
    rows = []
    for c in _call(_client().charges, tenant=tenant, job_id=job, status=status):
        for ln in c["lines"] or [{"model": "-", "du": "0", "fen_per_du": None, "gross_fen": 0}]:
            rows.append([str(c["job_id"]), str(c["attempt"]), c["provider"], ln["model"], ln["du"],
                         c["price_kind"], ln["fen_per_du"] or "-", yuan(ln["gross_fen"]), c["status"]])
    out.print(_table("Charges", ["JOB", "ATTEMPT", "PROVIDER", "MODEL", "DU", "PRICE", "FEN/DU", "GROSS ¥", "STATUS"],
                     rows))


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def profile(tenant: Annotated[str, typer.Argument(help="Tenant.")],
            region: Annotated[str | None, typer.Option(help="Region, e.g. shanghai.")] = None,
            tags: Annotated[str | None, typer.Option(help="Industry tags, comma-separated.")] = None,
            credit_yuan: Annotated[str | None, typer.Option(help="Credit limit in yuan.")] = None,
            affiliated: Annotated[str | None, typer.Option(help="Affiliated providers, comma-separated.")] = None,
            ) -> None:
    """Show a tenant's profile; operators set it with the options (unset ones keep their value)."""
    api = _client()
    current = _call(api.tenant_profile, tenant)
    if any(v is not None for v in (region, tags, credit_yuan, affiliated)):
        current = _call(api.set_tenant_profile, tenant,
                        region=current["region"] if region is None else region,
                        industry_tags=current["industry_tags"] if tags is None else _split(tags),
                        credit_limit_fen=current["credit_limit_fen"] if credit_yuan is None
                        else parse_yuan(credit_yuan),
                        affiliated_providers=current["affiliated_providers"] if affiliated is None
                        else _split(affiliated))
    out.print(_table(f"Profile of {tenant}", ["REGION", "INDUSTRY", "CREDIT LIMIT ¥", "AFFILIATED"],
                     [[current["region"] or "-", ", ".join(current["industry_tags"]) or "-",
                       yuan(current["credit_limit_fen"]), ", ".join(current["affiliated_providers"]) or "-"]]))


def receivables() -> None:
    """What the platform owes providers, net of its fee (a provider sees its own)."""
    rows = [[r["provider"], yuan(r["receivable_fen"]), yuan(r["in_flight_fen"])]
            for r in _call(_client().receivables)]
    out.print(_table("Receivables", ["PROVIDER", "OWED ¥", "IN FLIGHT ¥"], rows))


# -- products


def _products_table(items: list[dict[str, Any]]) -> Table:
    return _table("Products", ["ID", "KIND", "NAME", "DU", "PRICE ¥", "DAYS", "MODELS", "ACTIVE"], [
        [p["product_id"], p["kind"], p["name"], p["du"], yuan(p["price_fen"]), str(p["validity_days"]),
         ", ".join(p["models"]) if p["models"] else "any", "yes" if p["active"] else "no"] for p in items])


@products_app.callback()
def products_list(ctx: typer.Context,
                  all_: Annotated[bool, typer.Option("--all", help="Include retired products.")] = False) -> None:
    """List products on sale."""
    if ctx.invoked_subcommand is None:
        out.print(_products_table(_call(_client().products, include_retired=all_)))


@products_app.command("create")
def products_create(
    product_id: Annotated[str, typer.Argument(help="Id, e.g. card-a100.")],
    name: Annotated[str, typer.Option(help="Shown to buyers.")],
    du: Annotated[str, typer.Option(help="du in the product, exact decimal, e.g. 10 or 2.5.")],
    days: Annotated[int, typer.Option(help="Valid for this many days after purchase.")],
    fen: Fen = None, yuan_: Yuan = None,
    kind: Annotated[str, typer.Option(help="hour_card or training_package.")] = "hour_card",
    models: Annotated[str | None, typer.Option(help="Hour card: models or classes it covers, comma-separated.")]
    = None,
    accelerator_class: Annotated[str | None, typer.Option("--class", help="Training package: accelerator class.")]
    = None,
    priority: Annotated[int, typer.Option(
        help="Training package: its holders' jobs get this package priority in the queue.")] = 0,
) -> None:
    """Operator: define an hour card or a training package."""
    price = amount_fen(fen, yuan_)
    body: dict[str, Any] = {"product_id": product_id, "kind": kind, "name": name, "du": du, "price_fen": price,
                            "validity_days": days}
    if models:
        body["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if accelerator_class:
        body.update(accelerator_class=accelerator_class, priority=priority)
    out.print(_products_table([_call(_client().create_product, body)]))


@products_app.command("retire")
def products_retire(product_id: str) -> None:
    """Operator: stop selling a product (holdings already bought stay valid)."""
    out.print(_products_table([_call(_client().retire_product, product_id)]))


# -- holdings


def _holdings_table(items: list[dict[str, Any]]) -> Table:
    return _table("Holdings", ["ID", "PRODUCT", "DU LEFT", "VALUE LEFT ¥", "EXPIRES", "STATE"], [
        [h["holding_id"], h["product_id"], h["du_left"], yuan(h["value_left_fen"]), (h["expires"] or "")[:19],
         h["state"]] for h in items])


@holdings_app.callback()
def holdings_list(ctx: typer.Context,
                  tenant: Annotated[str | None, typer.Option(help="Another tenant (operators).")] = None) -> None:
    """List your hour cards and packages."""
    if ctx.invoked_subcommand is None:
        out.print(_holdings_table(_call(_client().holdings, tenant)))


@holdings_app.command("refund")
def holdings_refund(holding_id: str) -> None:
    """Refund a valid holding's unused value to your wallet."""
    result = _call(_client().refund_holding, holding_id)
    out.print(f"refunded {yuan(result['refunded_fen'])} for {holding_id}", highlight=False)


@holdings_app.command("expire")
def holdings_expire() -> None:
    """Operator: write off holdings past their expiry."""
    expired = _call(_client().expire_holdings)["expired"]
    out.print(f"{len(expired)} holding(s) expired, {yuan(sum(e['breakage_fen'] for e in expired))} of breakage",
              highlight=False)


# -- prices


def _prices_table(items: list[dict[str, Any]]) -> Table:
    rows = []
    for p in items:
        bands = ", ".join(f"{b['name']} {b['start']}-{b['end']}" for b in p["bands"]) or "-"
        rules = "; ".join(", ".join(f"{k}={v}" for k, v in r.items() if k != "fen_per_du") + f": {r['fen_per_du']}"
                          for r in p["rules"]) or "-"
        rows.append([p["provider"], str(p["base_fen_per_du"]), str(p["interruptible_floor_fen_per_du"]), bands,
                     rules, f"{p['utc_offset_min']:+d}"])
    return _table("Prices (fen per du)", ["PROVIDER", "BASE", "INTERRUPTIBLE FLOOR", "BANDS", "RULES", "UTC OFFSET"],
                  rows)


@prices_app.callback()
def prices_list(ctx: typer.Context) -> None:
    """Every provider's posted prices."""
    if ctx.invoked_subcommand is None:
        out.print(_prices_table(_call(_client().prices)))


@prices_app.command("set")
def prices_set(file: Annotated[Path, typer.Argument(help="YAML: base_fen_per_du, bands, rules, ... (docs/money.md)")],
               provider: Annotated[str | None, typer.Option(help="Provider (default: yours).")] = None) -> None:
    """Post a price schedule from a YAML file, replacing the previous one."""
    if not file.exists():
        raise fail(f"{file} does not exist", 2)
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise fail(f"{file} is not valid YAML: {exc}", 2) from exc
    if not isinstance(data, dict):
        raise fail(f"{file} must be a mapping with base_fen_per_du, bands and rules", 2)
    api = _client()
    name = provider or data.pop("provider", None)
    if not isinstance(name, str) or not name:
        raise fail(f"name the provider: --provider NAME, or 'provider: NAME' in {file}", 2)
    out.print(_prices_table([_call(api.set_prices, name, data)]))


# -- vouchers


@vouchers_app.callback()
def vouchers_default(ctx: typer.Context) -> None:
    """Your voucher grants (operators: every grant)."""
    if ctx.invoked_subcommand is None:
        _grants(None)


@vouchers_app.command("programs")
def vouchers_programs() -> None:
    """Voucher programs: ratios, caps, budget and what has been redeemed."""
    out.print(_table("Voucher programs", ["ID", "ISSUER", "RATIO", "DOMESTIC", "CAP/TENANT ¥", "BUDGET ¥",
                                          "FUNDED ¥", "REDEEMED ¥", "REGIONS"], [
        [p["program_id"], p["issuer"], p["coverage_ratio"], p["domestic_coverage_ratio"],
         yuan(p["tenant_annual_cap_fen"]), yuan(p["budget_fen"]), yuan(p["funded_balance_fen"]),
         yuan(p["redeemed_fen"]), ", ".join(p["eligible_regions"]) or "any"]
        for p in _call(_client().voucher_programs)]))


@vouchers_app.command("create")
def vouchers_create(file: Annotated[Path, typer.Argument(help="YAML of the program (docs/money.md).")]) -> None:
    """Operator: create a voucher program from a YAML file."""
    if not file.exists():
        raise fail(f"{file} does not exist", 2)
    data = yaml.safe_load(file.read_text())
    if not isinstance(data, dict):
        raise fail(f"{file} must be a mapping", 2)
    created = _call(_client().create_voucher_program, data)
    out.print(f"created voucher program {created['program_id']}", highlight=False)


@vouchers_app.command("fund")
def vouchers_fund(program: str, fen: Fen = None, yuan_: Yuan = None, key: Key = None) -> None:
    """Operator: record the issuer's funding of a program's budget."""
    amount = amount_fen(fen, yuan_)
    assert amount is not None
    result = _call(_client().fund_voucher_program, program, amount, idempotency_key=_key(key))
    out.print(f"funded {program} with {yuan(amount)}; funded balance {yuan(result['program']['funded_balance_fen'])}",
              highlight=False)


@vouchers_app.command("grant")
def vouchers_grant(program: str, tenant: str, fen: Fen = None, yuan_: Yuan = None,
                   expires_ms: Annotated[int | None, typer.Option(help="Expiry, epoch ms (default: none).")] = None,
                   key: Key = None) -> None:
    """Operator: grant a program's vouchers to an eligible tenant (default amount: up to the annual cap)."""
    amount = amount_fen(fen, yuan_, required=False)
    granted = _call(_client().grant_voucher, program, tenant, amount_fen=amount, expires_ms=expires_ms,
                    idempotency_key=_key(key))
    out.print(f"granted {granted['grant_id']} of {program} to {tenant}: "
              f"{yuan(amount) if amount else 'up to the annual cap'}", highlight=False)


def _grants(tenant: str | None) -> None:
    out.print(_table("Voucher grants", ["GRANT", "PROGRAM", "TENANT", "AMOUNT ¥", "USED ¥", "EXPIRES"], [
        [g["grant_id"], g["program_id"], g["tenant"], "up to cap" if g["amount_fen"] is None else yuan(g["amount_fen"]),
         yuan(g["used_fen"]), (g["expires_at"] or "never")[:19]] for g in _call(_client().voucher_grants, tenant)]))


@vouchers_app.command("grants")
def vouchers_grants(tenant: Annotated[str | None, typer.Option(help="One tenant (operators).")] = None) -> None:
    """Voucher grants and what each has paid."""
    _grants(tenant)


@vouchers_app.command("report")
def vouchers_report(program: str) -> None:
    """Operator: the redemption report for a program's issuer, as CSV."""
    sys.stdout.write(_call(_client().voucher_report_csv, program))


# -- invoices


@invoices_app.callback()
def invoices_list(ctx: typer.Context,
                  tenant: Annotated[str | None, typer.Option(help="One tenant (operators).")] = None,
                  period: Annotated[str | None, typer.Option(help="One month, YYYY-MM.")] = None) -> None:
    """List invoices, newest month first."""
    if ctx.invoked_subcommand is None:
        out.print(_table("Invoices", ["ID", "TENANT", "PERIOD", "GROSS ¥", "CARDS ¥", "VOUCHERS ¥", "NET ¥"], [
            [str(i["id"]), i["tenant"], i["period"], yuan(i["gross_fen"]), yuan(i["card_value_fen"]),
             yuan(i["voucher_fen"]), yuan(i["net_fen"])]
            for i in _call(_client().invoices, tenant=tenant, period=period)]))


@invoices_app.command("run")
def invoices_run(period: Annotated[str, typer.Argument(help="The month, YYYY-MM (it must have ended).")]) -> None:
    """Operator: issue every tenant's invoice for a month; running it again issues only what is missing."""
    result = _call(_client().run_invoices, period)
    out.print(_table(f"Invoice run {result['period']} (fee {result['fee_ratio']})",
                     ["TENANT", "STATUS", "INVOICE", "NET ¥", "REASON"], [
        [r["tenant"], r["status"], str(r.get("invoice_id") or "-"), yuan(r.get("net_fen")), r.get("reason", "")]
        for r in result["tenants"]]))
    if any(r["status"] == "refused" for r in result["tenants"]):
        raise typer.Exit(1)


@invoices_app.command("show")
def invoices_show(invoice_id: int,
                  as_csv: Annotated[bool, typer.Option("--csv", help="Print the itemised CSV.")] = False,
                  as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """One invoice, itemised by job attempt: du, price, cards, discount, voucher and net."""
    api = _client()
    if as_csv:
        sys.stdout.write(_call(api.invoice_csv, invoice_id))
        return
    inv = _call(api.invoice, invoice_id)
    if as_json:
        typer.echo(json.dumps(inv, sort_keys=True))
        return
    table = _table(f"Invoice {inv['id']}: {inv['tenant']} {inv['period']}",
                   ["JOB", "ATT", "PROVIDER", "MODEL", "DU", "FEN/DU", "GROSS ¥", "CARD DU", "CARD ¥", "VOUCHER ¥",
                    "NET ¥"],
                   [[ln["job_id"], str(ln["attempt"]), ln["provider"], ln["model"], ln["du"], ln["fen_per_du"] or "-",
                     yuan(ln["gross_fen"]), ln["card_du"], yuan(ln["card_value_fen"]), yuan(ln["voucher_fen"]),
                     yuan(ln["net_fen"])] for ln in inv["lines"]])
    table.add_row("total", "", "", "", inv["du"], "", yuan(inv["gross_fen"]), "", yuan(inv["card_value_fen"]),
                  yuan(inv["voucher_fen"]), yuan(inv["net_fen"]))
    out.print(table)
    for problem in inv.get("problems", []):
        err.print(f"[yellow]note:[/] {problem}", highlight=False)


# -- payouts


def _payouts_table(items: list[dict[str, Any]]) -> Table:
    return _table("Payouts", ["ID", "PROVIDER", "AMOUNT ¥", "STATUS", "CREATED"], [
        [p["payout_id"], p["provider"], yuan(p["amount_fen"]), p["status"], (p["created_at"] or "")[:19]]
        for p in items])


@payouts_app.callback()
def payouts_list(ctx: typer.Context,
                 provider: Annotated[str | None, typer.Option(help="One provider (operators).")] = None) -> None:
    """List payouts (a provider sees its own)."""
    if ctx.invoked_subcommand is None:
        out.print(_payouts_table(_call(_client().payouts, provider)))


@payouts_app.command("send")
def payouts_send(provider: str, fen: Fen = None, yuan_: Yuan = None, key: Key = None) -> None:
    """Operator: pay a provider part or all of what it is owed."""
    amount = amount_fen(fen, yuan_)
    assert amount is not None
    out.print(_payouts_table([_call(_client().start_payout, provider, amount, idempotency_key=_key(key))]))


@payouts_app.command("confirm")
def payouts_confirm(payout_id: str) -> None:
    """Operator: the bank confirmed the transfer."""
    out.print(_payouts_table([_call(_client().confirm_payout, payout_id)]))


@payouts_app.command("fail")
def payouts_fail(payout_id: str) -> None:
    """Operator: the transfer failed; the amount is owed to the provider again."""
    out.print(_payouts_table([_call(_client().fail_payout, payout_id)]))


def register(app: typer.Typer) -> None:
    """Add the money commands to the main CLI."""
    for fn, name in ((wallet, "wallet"), (topup, "topup"), (buy, "buy"), (statement, "statement"),
                     (charges, "charges"), (profile, "profile"), (receivables, "receivables")):
        app.command(name)(fn)
    for sub, name in ((products_app, "products"), (holdings_app, "holdings"), (prices_app, "prices"),
                      (vouchers_app, "vouchers"), (invoices_app, "invoices"), (payouts_app, "payouts")):
        app.add_typer(sub, name=name)
