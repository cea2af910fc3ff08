"""The money commands, run in-process against the API: exact amounts in, ¥ with two decimals out,
and a mistyped amount is a clear error with a non-zero exit that moves no money."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from computegrid.cli import money
from computegrid.client import Client
from tests.api.conftest import World
from tests.api.test_money_catalog import A100_CARD
from tests.api.test_money_wallets import assert_nothing_moved, books, money_world

__all__ = ["money_world"]


@pytest.mark.parametrize("text,fen", [("12.34", 1234), ("12.3", 1230), ("12", 1200), ("0.01", 1),
                                      ("1000000", 100_000_000)])
def test_yuan_is_parsed_exactly(text: str, fen: int) -> None:
    assert money.parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["12.345", "-1", "1e3", "1,000", "", "¥5", "0x10", "nan"])
def test_bad_yuan_is_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        money.parse_yuan(text)


@pytest.mark.parametrize("fen,shown", [(0, "¥0.00"), (1, "¥0.01"), (123456, "¥1,234.56"), (-50, "-¥0.50")])
def test_amounts_are_shown_in_yuan(fen: int, shown: str) -> None:
    assert money.yuan(fen) == shown


def cli(world: World, monkeypatch: pytest.MonkeyPatch, who: str) -> Any:
    client = Client("http://testserver", world.keys[who])
    client.http = world.app_client
    client.http.headers["Authorization"] = f"Bearer {world.keys[who]}"
    monkeypatch.setattr(money, "_client", lambda: client)
    app = typer.Typer()
    app.command("version")(lambda: None)  # a second command, so Typer keeps sub-command names
    money.register(app)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env={"COLUMNS": "200"})

    return run


def test_operator_tops_up_and_tenant_buys_through_the_cli(money_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = money_world
    run = cli(w, monkeypatch, "op")
    done = run("topup", "alpha", "--yuan", "12.34", "--key", "k1")
    assert done.exit_code == 0, done.output
    assert "¥12.34" in done.output
    assert run("topup", "alpha", "--yuan", "12.34", "--key", "k1").exit_code == 0  # a replay moves nothing
    assert "¥12.34" in run("wallet", "--tenant", "alpha").output
    before = books(w)
    for args in (("topup", "alpha", "--yuan", "12.345"), ("topup", "alpha", "--fen", "5", "--yuan", "1"),
                 ("topup", "alpha"), ("topup", "alpha", "--fen", "0"), ("topup", "alpha", "--fen", "-3"),
                 ("topup", "alpha", "--fen", "1.5"), ("topup", "nobody", "--fen", "5"),
                 ("topup", "alpha", "--yuan", "9", "--key", "k1")):
        result = run(*args)
        assert result.exit_code != 0, (args, result.output)
    assert_nothing_moved(w, before)
    assert "Idempotency-Key 'k1'" in run("topup", "alpha", "--yuan", "9", "--key", "k1").output

    created = run("products", "create", "card-a100", "--name", "A100 card", "--du", "1", "--days", "30",
                  "--yuan", "8", "--models", "A100")
    assert created.exit_code == 0, created.output
    assert "A100-40G, A100-80G" in created.output
    listed = run("products")
    assert "card-a100" in listed.output and "¥8.00" in listed.output
    bought = run("buy", "card-a100")
    assert bought.exit_code == 0, bought.output
    assert "¥4.34" in run("wallet").output  # 12.34 - 8.00, the operator's own tenant is alpha
    statement = run("statement", "--csv")
    assert statement.output.splitlines()[0] == "time,key,memo,amount_fen,running_balance_fen"
    assert statement.output.splitlines()[-1].endswith(",-800,434")
    assert "card-a100" in run("holdings").output
    refused = run("buy", "nope")
    assert refused.exit_code == 1 and "no product 'nope'" in refused.output


def test_tenant_cannot_use_operator_commands(money_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = money_world
    w.call("op", "POST", "/v1/products", json=A100_CARD)
    run = cli(w, monkeypatch, "alice")
    before = books(w)
    result = run("topup", "alpha", "--fen", "100")
    assert result.exit_code == 1 and "only an operator" in result.output
    assert run("invoices", "run", "2026-01").exit_code == 1
    broke = run("buy", "card-a100")
    assert broke.exit_code == 1 and "short" in broke.output
    assert_nothing_moved(w, before)
