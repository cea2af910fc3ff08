"""The month's invoice for a tenant, and the postings that settle it.

Per usage line (one job attempt), in usage-time order:
1. gross = the line's charge at the provider's list price (charges.py);
2. cards: draw the line's du from the tenant's valid holdings (holdings.py). The list
   price of the covered du is round_half_up(gross x covered / du); the prepaid value
   released is at the card's own price; list minus value is the platform's
   discount_expense (negative when the card was dearer than the list price);
3. voucher: on what cards left (the cash part), the one eligible grant paying most;
4. net = cash part - voucher, paid from the wallet;
5. fee = round_half_up(fee_ratio x gross) to the platform; gross - fee to the provider.

Each line settles in one posting keyed `usage:<job>:<attempt>`:
wallet -net, prepaid -card value, discount_expense -(list - value),
voucher_budget:<program> -voucher, receivable:<provider> +(gross - fee), fee_revenue +fee.
Replaying the invoice re-posts identical postings, which the ledger ignores.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.billing.accounts import (
    DISCOUNT_EXPENSE,
    FEE_REVENUE,
    Account,
    prepaid,
    receivable,
    voucher_budget,
    wallet,
)
from computegrid.core.billing.charges import Charge
from computegrid.core.billing.errors import BillingError, ChargeError, InvalidAmount
from computegrid.core.billing.holdings import CardDraw, Holding, draw_down
from computegrid.core.billing.ledger import Posting, posting_from_amounts
from computegrid.core.billing.money import require_du, require_fen, require_ratio, require_time_ms, round_half_up
from computegrid.core.billing.vouchers import (
    TenantProfile,
    VoucherGrant,
    VoucherProgram,
    VoucherUsage,
    parse_period,
    redemption_ineligibility,
    voucher_share,
)
from computegrid.core.billing.wallets import ensure_can_debit
from computegrid.core.jobs.spec import TIERS

INVOICE_COLUMNS = ("job_id", "attempt", "provider", "model", "tier", "du", "fen_per_du", "gross_fen", "card_du",
                   "card_value_fen", "discount_fen", "voucher_program", "voucher_fen", "net_fen")


def format_du(du: Fraction, places: int = 6) -> str:
    """du as a decimal string rounded half up to `places` decimals, for display only."""
    scaled = round_half_up(du * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


@dataclass(frozen=True)
class UsageLine:
    """One job attempt's usage to bill: du, its gross at list price (fen), and when it ended (epoch ms)."""

    job_id: str
    attempt: int
    provider: str
    model: str
    tier: str
    du: Fraction
    gross_fen: int
    domestic: bool
    at_ms: int

    def __post_init__(self) -> None:
        if not self.job_id or not self.provider or not self.model:
            raise BillingError("a usage line needs a job id, a provider and a model")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 0:
            raise InvalidAmount(f"job {self.job_id}: attempt must be an int >= 0, got {self.attempt!r}")
        if self.tier not in TIERS:
            raise BillingError(f"job {self.job_id}: tier must be one of {', '.join(TIERS)}, got {self.tier!r}")
        object.__setattr__(self, "du", require_du(self.du, f"job {self.job_id} du", allow_zero=True))
        require_fen(self.gross_fen, f"job {self.job_id} gross", allow_zero=True)
        require_time_ms(self.at_ms, f"job {self.job_id} usage time")

    @property
    def key(self) -> str:
        return f"usage:{self.job_id}:{self.attempt}"

    @property
    def fen_per_du(self) -> Fraction | None:
        """The average list price of the line (exact), None for a line of zero du."""
        return self.gross_fen / self.du if self.du else None


def usage_line(*, job_id: str, attempt: int, provider: str, tier: str, domestic: bool, charge: Charge,
               at_ms: int) -> UsageLine:
    """A usage line from a priced charge of one accelerator model."""
    if len(charge.models) != 1:
        raise ChargeError(f"job {job_id}: a usage line covers one accelerator model, got "
                          f"{', '.join(sorted(charge.models)) or 'no usage'}")
    (model,) = charge.models
    return UsageLine(job_id=job_id, attempt=attempt, provider=provider, model=model, tier=tier, du=charge.du,
                     gross_fen=charge.amount_fen, domestic=domestic, at_ms=at_ms)


@dataclass(frozen=True)
class InvoiceLine:
    """How one usage line was paid, all in fen: cards, voucher, wallet; and the platform fee."""

    usage: UsageLine
    card_du: Fraction
    card_list_fen: int
    card_value_fen: int
    card_draws: tuple[CardDraw, ...]
    voucher_program: str | None
    voucher_grant: str | None
    voucher_eligible_fen: int
    voucher_fen: int
    net_fen: int
    fee_fen: int

    @property
    def discount_fen(self) -> int:
        return self.card_list_fen - self.card_value_fen

    @property
    def provider_fen(self) -> int:
        return self.usage.gross_fen - self.fee_fen


@dataclass(frozen=True)
class Invoice:
    """A tenant's invoice for one period; `holdings` and `voucher_usage` are the state after it."""

    invoice_id: str
    tenant: str
    period: str
    at_ms: int
    lines: tuple[InvoiceLine, ...]
    postings: tuple[Posting, ...]
    holdings: tuple[Holding, ...]
    voucher_usage: VoucherUsage

    @property
    def du(self) -> Fraction:
        return sum((ln.usage.du for ln in self.lines), Fraction(0))

    @property
    def gross_fen(self) -> int:
        return sum(ln.usage.gross_fen for ln in self.lines)

    @property
    def card_value_fen(self) -> int:
        return sum(ln.card_value_fen for ln in self.lines)

    @property
    def discount_fen(self) -> int:
        return sum(ln.discount_fen for ln in self.lines)

    @property
    def voucher_fen(self) -> int:
        return sum(ln.voucher_fen for ln in self.lines)

    @property
    def net_fen(self) -> int:
        return sum(ln.net_fen for ln in self.lines)

    @property
    def fee_fen(self) -> int:
        return sum(ln.fee_fen for ln in self.lines)


def invoice_id_for(tenant: str, period: str) -> str:
    return f"invoice:{tenant}:{period}"


def build_invoice(*, tenant: TenantProfile, period: str, at_ms: int, lines: Sequence[UsageLine],
                  holdings: Sequence[Holding], programs: Mapping[str, VoucherProgram], grants: Sequence[VoucherGrant],
                  voucher_usage: VoucherUsage, fee_ratio: Fraction, wallet_balance_fen: int,
                  credit_limit_fen: int) -> Invoice:
    """Price, discount and settle a tenant's usage lines for `period` ('YYYY-MM').

    Returns the invoice with its postings (post them with `Ledger.post_many`), the
    holdings after card draws and the voucher usage after redemptions. Refuses, moving
    nothing, a repeated job attempt, another tenant's holding or grant, a grant of an
    unknown program, and a total that would take the wallet below its credit limit.
    """
    parse_period(period)
    require_time_ms(at_ms, "invoice time")
    fee = require_ratio(fee_ratio, "platform fee ratio")
    invoice_id = invoice_id_for(tenant.tenant, period)
    _check_inputs(tenant, lines, holdings, programs, grants)
    current = tuple(holdings)
    usage = voucher_usage
    priced: list[InvoiceLine] = []
    for line in sorted(lines, key=lambda ln: (ln.at_ms, ln.job_id, ln.attempt)):
        # A line that costs nothing (reserved blocks are paid up front) never uses up prepaid du.
        drawn = draw_down(current, line.du if line.gross_fen > 0 else Fraction(0), line.model, line.at_ms)
        current = drawn.holdings
        card_list = round_half_up(line.gross_fen * drawn.covered_du / line.du) if line.du else 0
        cash = line.gross_fen - card_list
        grant, program, share = _best_voucher(tenant, line, cash, period, programs, grants, usage)
        if grant is not None and program is not None and share:
            usage = usage.record(grant, program.year_of(period), share)
        priced.append(InvoiceLine(
            usage=line, card_du=drawn.covered_du, card_list_fen=card_list, card_value_fen=drawn.value_fen,
            card_draws=drawn.draws, voucher_program=program.program_id if share and program else None,
            voucher_grant=grant.grant_id if share and grant else None, voucher_eligible_fen=cash, voucher_fen=share,
            net_fen=cash - share, fee_fen=round_half_up(fee * line.gross_fen)))
    ensure_can_debit(tenant=tenant.tenant, balance_fen=wallet_balance_fen, debit_fen=sum(ln.net_fen for ln in priced),
                     credit_limit_fen=credit_limit_fen)
    postings = tuple(p for p in (_settlement(invoice_id, tenant.tenant, at_ms, ln) for ln in priced) if p)
    return Invoice(invoice_id=invoice_id, tenant=tenant.tenant, period=period, at_ms=at_ms, lines=tuple(priced),
                   postings=postings, holdings=current, voucher_usage=usage)


def _check_inputs(tenant: TenantProfile, lines: Sequence[UsageLine], holdings: Sequence[Holding],
                  programs: Mapping[str, VoucherProgram], grants: Sequence[VoucherGrant]) -> None:
    keys = [ln.key for ln in lines]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise BillingError(f"job attempts billed twice in one invoice: {', '.join(repeated)}")
    for h in holdings:
        if h.tenant != tenant.tenant:
            raise BillingError(f"holding {h.holding_id!r} belongs to {h.tenant!r}, not {tenant.tenant!r}")
    for g in grants:
        if g.tenant != tenant.tenant:
            raise BillingError(f"voucher grant {g.grant_id!r} belongs to {g.tenant!r}, not {tenant.tenant!r}")
        if g.program_id not in programs:
            raise BillingError(f"voucher grant {g.grant_id!r} names unknown program {g.program_id!r}")


def _best_voucher(tenant: TenantProfile, line: UsageLine, cash_fen: int, period: str,
                  programs: Mapping[str, VoucherProgram], grants: Sequence[VoucherGrant],
                  usage: VoucherUsage) -> tuple[VoucherGrant | None, VoucherProgram | None, int]:
    """At most one grant pays a line (no double subsidy): the eligible one paying most, ties by grant id."""
    best: tuple[VoucherGrant | None, VoucherProgram | None, int] = (None, None, 0)
    for grant in sorted(grants, key=lambda g: g.grant_id):
        program = programs[grant.program_id]
        if redemption_ineligibility(program=program, grant=grant, tenant=tenant, provider=line.provider,
                                    at_ms=line.at_ms):
            continue
        share = voucher_share(program, grant, cash_fen, domestic=line.domestic,
                              tenant_used_this_year_fen=usage.used_by(program.program_id, tenant.tenant,
                                                                      program.year_of(period)),
                              program_spent_fen=usage.spent(program.program_id),
                              grant_used_fen=usage.used_of(grant.grant_id))
        if share > best[2]:
            best = (grant, program, share)
    return best


def _settlement(invoice_id: str, tenant: str, at_ms: int, line: InvoiceLine) -> Posting | None:
    amounts: dict[Account, int] = {}

    def add(account: Account, fen: int) -> None:
        amounts[account] = amounts.get(account, 0) + fen

    add(wallet(tenant), -line.net_fen)
    add(prepaid(tenant), -line.card_value_fen)
    add(DISCOUNT_EXPENSE, -line.discount_fen)
    if line.voucher_program is not None:
        add(voucher_budget(line.voucher_program), -line.voucher_fen)
    add(receivable(line.usage.provider), line.provider_fen)
    add(FEE_REVENUE, line.fee_fen)
    if not any(amounts.values()):
        return None
    u = line.usage
    memo = f"{invoice_id}: job {u.job_id} attempt {u.attempt}, {format_du(u.du)} du {u.model} at {u.provider}"
    return posting_from_amounts(u.key, at_ms, memo, amounts)


def invoice_csv(invoice: Invoice) -> str:
    """The invoice itemised by job attempt, with a total row; amounts in fen, du to 6 decimals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INVOICE_COLUMNS)
    for ln in invoice.lines:
        u = ln.usage
        price = u.fen_per_du
        writer.writerow((u.job_id, u.attempt, u.provider, u.model, u.tier, format_du(u.du),
                         "" if price is None else format_du(price, 2), u.gross_fen, format_du(ln.card_du),
                         ln.card_value_fen, ln.discount_fen, ln.voucher_program or "", ln.voucher_fen, ln.net_fen))
    writer.writerow(("total", "", "", "", "", format_du(invoice.du), "", invoice.gross_fen, "", invoice.card_value_fen,
                     invoice.discount_fen, "", invoice.voucher_fen, invoice.net_fen))
    return out.getvalue()
