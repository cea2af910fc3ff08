"""Money in the live service: the database ledger, wallets, prices, prepaid products, vouchers,
charges of finished job attempts, monthly invoices and provider payouts.

The rules are core/billing's (see docs/billing.md); these modules load state, call the
rule, and record its postings and state in the caller's transaction. See docs/money.md
for who calls what.
"""
