"""Voucher redemption reports for issuers, built from invoices."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from computegrid.core.billing.invoice import Invoice
from computegrid.core.billing.vouchers import VoucherProgram

REDEMPTION_COLUMNS = ("program_id", "year", "tenant", "provider", "lines", "eligible_fen", "voucher_fen")


@dataclass(frozen=True)
class RedemptionRow:
    """Vouchers of one program paid for one tenant's usage at one provider in one program year (fen)."""

    program_id: str
    year: int
    tenant: str
    provider: str
    lines: int
    eligible_fen: int
    voucher_fen: int


def redemption_report(program: VoucherProgram, invoices: Iterable[Invoice]) -> tuple[RedemptionRow, ...]:
    """Per (year, tenant, provider): how many lines the program paid, their eligible amount and the voucher fen."""
    totals: dict[tuple[int, str, str], tuple[int, int, int]] = {}
    for invoice in invoices:
        year = program.year_of(invoice.period)
        for line in invoice.lines:
            if line.voucher_program != program.program_id:
                continue
            key = (year, invoice.tenant, line.usage.provider)
            n, eligible, paid = totals.get(key, (0, 0, 0))
            totals[key] = (n + 1, eligible + line.voucher_eligible_fen, paid + line.voucher_fen)
    return tuple(RedemptionRow(program.program_id, year, tenant, provider, n, eligible, paid)
                 for (year, tenant, provider), (n, eligible, paid) in sorted(totals.items()))


def redemption_report_csv(program: VoucherProgram, invoices: Iterable[Invoice]) -> str:
    """The redemption report as CSV, one row per (year, tenant, provider)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REDEMPTION_COLUMNS)
    for r in redemption_report(program, invoices):
        writer.writerow((r.program_id, r.year, r.tenant, r.provider, r.lines, r.eligible_fen, r.voucher_fen))
    return out.getvalue()
