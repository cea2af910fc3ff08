"""core/throughput.py: the Gavel-seeded heterogeneity table, lookups, lab overrides and price-performance ranking."""

from __future__ import annotations

import math

import pytest

from computegrid.core.catalog import default_catalog
from computegrid.core.throughput import (
    GAVEL_WORKER_MODELS,
    ThroughputRow,
    ThroughputTable,
    default_throughputs,
    parse_throughputs,
)
from tests.core._helpers import catalog_from_rows

HEADER = "job_type,scale_factor,worker_type,throughput_steps_per_s"
R50 = "ResNet-50 (batch size 64)"
XFMR = "Transformer (batch size 64)"


@pytest.fixture(scope="module")
def table() -> ThroughputTable:
    return default_throughputs()


def test_default_table_is_read_once(table):
    assert default_throughputs() is table


def test_gavel_workers_map_to_catalog_models(table):
    catalog = default_catalog()
    assert set(GAVEL_WORKER_MODELS.values()) == {"K80", "P100-16G", "V100-16G"}
    for model in table.models():
        catalog.get(model)  # every seeded model is a catalog model
    assert table.models() == ("K80", "P100-16G", "V100-16G")


def test_workload_classes_are_gavels_job_types(table):
    classes = table.workload_classes()
    assert len(classes) == 26
    assert {R50, XFMR, "A3C", "CycleGAN", "LM (batch size 20)", "Recommendation (batch size 2048)"} <= set(classes)
    assert list(classes) == sorted(classes)


@pytest.mark.parametrize(
    ("model", "workload", "scale", "consolidated", "expected"),
    [  # copied from data/gavel_throughputs.csv
        ("K80", "ResNet-18 (batch size 16)", 1, True, 4.795294551566172),
        ("K80", R50, 1, True, 0.6190282202246573),
        ("P100-16G", R50, 1, True, 2.6194694075770055),
        ("V100-16G", R50, 1, True, 4.394774823323071),
        ("V100-16G", XFMR, 8, True, 49.650700211670745),
        ("V100-16G", XFMR, 8, False, 17.010354252487097),  # v100_unconsolidated
        ("K80", "ResNet-50 (batch size 128)", 2, True, 0.0),  # Gavel's "did not run": a measurement, not None
    ],
)
def test_effective_equals_the_csv(table, model, workload, scale, consolidated, expected):
    assert table.effective(model, workload, scale, consolidated=consolidated) == expected


def test_unmeasured_is_none(table):
    assert table.effective("H100-80G", R50) is None
    assert table.effective("V100-16G", "no such workload") is None
    assert table.effective("V100-16G", R50, 3) is None
    assert table.relative_speed("H100-80G", R50, "K80") is None
    assert table.relative_speed("V100-16G", "ResNet-50 (batch size 128)", "K80", 2) is None  # baseline ran at 0


def test_v100_beats_k80_but_the_ratio_depends_on_the_workload(table):
    r50 = table.relative_speed("V100-16G", R50, "K80")
    a3c = table.relative_speed("V100-16G", "A3C", "K80")
    assert r50 is not None and a3c is not None
    assert r50 > 1 and a3c > 1
    assert r50 == pytest.approx(4.394774823323071 / 0.6190282202246573)
    assert r50 > 3 * a3c  # ~7.1x on ResNet-50 but ~2.1x on A3C: one scalar speed-up would mislead
    assert table.relative_speed("K80", R50, "K80") == 1.0


def test_parse_skips_comments_and_blank_lines():
    text = (f"# source: somewhere\n\n{HEADER}\n# a comment between rows\nA3C,1,k80,3.5\n"
            "   # indented comment\nA3C,1,v100,7\n\n")
    table = parse_throughputs(text)
    assert table.effective("K80", "A3C") == 3.5
    assert table.effective("V100-16G", "A3C") == 7.0
    assert len(table.rows) == 2


def test_parse_takes_other_worker_types_as_catalog_models():
    table = parse_throughputs(f"{HEADER}\nA3C,2,H100-80G,40.5\nA3C,2,p100_unconsolidated,4\n")
    assert table.effective("H100-80G", "A3C", 2) == 40.5
    assert table.effective("P100-16G", "A3C", 2, consolidated=False) == 4.0
    assert table.effective("P100-16G", "A3C", 2) is None


def test_parse_empty_and_header_only():
    assert parse_throughputs("").rows == ()
    assert parse_throughputs(f"# only a comment\n{HEADER}\n").rows == ()


@pytest.mark.parametrize(
    "text",
    [
        "job,scale,worker,steps\nA3C,1,k80,1\n",  # wrong header
        f"{HEADER}\nA3C,1,k80\n",  # short row
        f"{HEADER}\nA3C,one,k80,1\n",  # scale not an integer
        f"{HEADER}\nA3C,0,k80,1\n",  # scale < 1
        f"{HEADER}\nA3C,1,k80,-1\n",  # negative throughput
        f"{HEADER}\nA3C,1,k80,nan\n",  # not finite
        f"{HEADER}\nA3C,1,k80,fast\n",  # not a number
        f"{HEADER}\nA3C,1,k80,1\nA3C,1,k80,2\n",  # duplicate
    ],
)
def test_parse_rejects_bad_rows(text):
    with pytest.raises(ValueError):
        parse_throughputs(text)


def test_table_is_frozen(table):
    with pytest.raises(AttributeError):
        table.rows = ()  # type: ignore[misc]


def test_with_measurements_overrides_and_extends(table):
    lab = [ThroughputRow("V100-16G", R50, 1, 5.0), ThroughputRow("H100-80G", R50, 1, 30.0)]
    new = table.with_measurements(lab)
    assert new.effective("V100-16G", R50) == 5.0  # measured overrides seeded
    assert new.effective("H100-80G", R50) == 30.0  # new model
    assert new.effective("P100-16G", R50) == table.effective("P100-16G", R50)  # the rest kept
    assert len(new.rows) == len(table.rows) + 1
    assert table.effective("V100-16G", R50) == 4.394774823323071  # the original is unchanged
    assert table.effective("H100-80G", R50) is None
    assert "H100-80G" in new.models()


def test_with_measurements_rejects_a_repeated_key(table):
    with pytest.raises(ValueError, match="duplicate"):
        table.with_measurements([ThroughputRow("K80", "A3C", 1, 1.0), ThroughputRow("K80", "A3C", 1, 2.0)])


@pytest.mark.parametrize("kwargs", [{"scale_factor": 0}, {"steps_per_s": math.inf}, {"steps_per_s": -0.5},
                                    {"model": " "}, {"scale_factor": True}])
def test_row_validation(kwargs):
    base = {"model": "K80", "workload": "A3C", "scale_factor": 1, "steps_per_s": 1.0}
    with pytest.raises(ValueError):
        ThroughputRow(**{**base, **kwargs})


def test_rank_by_price_performance_worked_example(table):
    """V100-16G: 125 TFLOPS rated = 0.125 du/h; at 100 fen/du it costs 12.5 fen/h and runs ResNet-50 at
    4.3948 steps/s -> 0.3516 steps/s per fen/h. P100-16G: 18.7 TFLOPS = 0.0187 du/h; at 100 fen/du it costs
    1.87 fen/h and runs 2.6195 steps/s -> 1.4008. The slower P100 is the better buy. At 500 fen/du the P100
    costs 9.35 fen/h -> 0.2802, and the V100 wins."""
    catalog = default_catalog()
    assert table.rank_models(["V100-16G", "P100-16G"], R50, {"V100-16G": 100, "P100-16G": 100}, catalog) == [
        "P100-16G", "V100-16G"]
    assert table.rank_models(["P100-16G", "V100-16G"], R50, {"V100-16G": 100, "P100-16G": 500}, catalog) == [
        "V100-16G", "P100-16G"]


def test_rank_falls_back_to_rated_fp16_per_price_when_unmeasured(table):
    catalog = default_catalog()
    prices = {"H100-80G": 90, "A100-80G": 80, "T4": 120}
    # No Gavel measurement for these: TFLOPS per fen/h is 1000 / price per du, so the cheapest du wins.
    assert table.rank_models(["T4", "H100-80G", "A100-80G"], R50, prices, catalog) == ["A100-80G", "H100-80G", "T4"]


def test_rank_puts_measured_then_rated_then_unknown_last_deterministically(table):
    catalog = default_catalog()
    prices = {"V100-16G": 100, "H100-80G": 100, "K80": 100, "L20": 100}
    models = ["ZZZ-9", "L20", "K80", "H100-80G", "T4", "V100-16G", "Ascend910B"]
    ranked = table.rank_models(models, R50, prices, catalog)
    # V100 measured; H100 rated only; K80 (measured, but no FP16 rating, so no du price), L20 (no FP16
    # rating), T4 (no price), Ascend910B (neither) and an uncatalogued name are unknown, by name.
    assert ranked == ["V100-16G", "H100-80G", "Ascend910B", "K80", "L20", "T4", "ZZZ-9"]
    assert table.rank_models(list(reversed(models)), R50, prices, catalog) == ranked


def test_rank_ties_break_by_name_and_duplicates_collapse():
    catalog = catalog_from_rows('X1-8G,,acme,alpha,8,,100,,,,PCIe,cuda,"Acme datasheet"',
                                'X2-8G,,acme,alpha,8,,100,,,,PCIe,cuda,"Acme datasheet"')
    empty = parse_throughputs(HEADER)
    ranked = empty.rank_models(["X2-8G", "X1-8G", "X2-8G"], "A3C", {"X1-8G": 5, "X2-8G": 5}, catalog)
    assert ranked == ["X1-8G", "X2-8G"]


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_rank_rejects_bad_prices(table, bad):
    with pytest.raises(ValueError, match="positive integer"):
        table.rank_models(["V100-16G"], R50, {"V100-16G": bad}, default_catalog())
