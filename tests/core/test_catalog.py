"""core/catalog.py: the shipped catalog, name resolution, and CSV parsing."""

from __future__ import annotations

from fractions import Fraction

import pytest

from computegrid.core.catalog import AcceleratorModel, UnknownAccelerator, default_catalog, parse_catalog
from computegrid.core.market import Offer, OrderError, check_offer
from computegrid.core.market.book import build_book
from tests.core._helpers import CATALOG_HEADER, catalog_from_rows


@pytest.fixture(scope="module")
def catalog():
    return default_catalog()


def test_default_catalog_loads_known_models(catalog):
    names = set(catalog.names)
    assert {"A100-40G", "A100-80G", "V100-16G", "V100-32G", "T4", "H100-80G", "MI300X"} <= names
    assert len(names) == len(catalog.names), "model names must be unique"
    assert all(isinstance(m, AcceleratorModel) for m in catalog.models)


def test_default_catalog_is_read_once(catalog):
    assert default_catalog() is catalog


def test_every_row_names_a_source(catalog):
    for entry in catalog.models:
        assert entry.source.strip(), f"{entry.model} has no source"


def test_figures_are_exact_fractions(catalog):
    a100 = catalog.get("A100-80G")
    assert a100.fp16_tflops == Fraction(312)
    assert a100.memory_gb == Fraction(80)
    h100 = catalog.get("H100-80G")
    assert h100.fp16_tflops == Fraction("989.5")
    assert isinstance(catalog.get("L40S").fp16_tflops, Fraction)
    assert catalog.get("L40S").fp16_tflops == Fraction(36205, 100)


def test_every_known_figure_is_positive(catalog):
    for e in catalog.models:
        for figure in (e.memory_gb, e.memory_bandwidth_gbs, e.fp16_tflops, e.fp32_tflops, e.int8_tops, e.tdp_w):
            assert figure is None or figure > 0, e.model


def test_unknown_figures_are_none(catalog):
    # The P100 datasheet gives no INT8 figure: the cell is empty, and stays unknown.
    assert catalog.get("P100-16G").int8_tops is None
    assert catalog.get("P100-16G").fp16_tflops is not None


def test_get_canonical_and_alias(catalog):
    assert catalog.get("V100-32G").model == "V100-32G"
    assert catalog.get("V100M32").model == "V100-32G"
    assert catalog.get("H100").model == "H100-80G"
    with pytest.raises(UnknownAccelerator):
        catalog.get("A100")  # a prefix group is not a model


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("A100-80G", {"A100-80G"}),
        ("V100M32", {"V100-32G"}),
        ("V100M16", {"V100-16G"}),
        ("A100", {"A100-40G", "A100-80G"}),
        ("V100", {"V100-16G", "V100-32G"}),
        ("ampere", {"A10", "A100-40G", "A100-80G", "A800-40G", "A800-80G"}),
        ("volta", {"V100-16G", "V100-32G"}),
        ("amd", {"MI250X", "MI300X"}),
        ("H100", {"H100-80G"}),
        ("T4", {"T4"}),
    ],
)
def test_resolve(catalog, name, expected):
    assert catalog.resolve(name) == frozenset(expected)


def test_resolve_vendor_covers_every_model_of_that_vendor(catalog):
    nvidia = {e.model for e in catalog.models if e.vendor == "nvidia"}
    assert catalog.resolve("nvidia") == frozenset(nvidia)
    assert "MI300X" not in nvidia


@pytest.mark.parametrize(("name", "canonical"), [("a100", "A100"), ("v100m32", "V100M32"), ("AMPERE", "ampere"),
                                                 ("NVIDIA", "nvidia"), ("a100-80g", "A100-80G"),
                                                 ("  t4 ", "T4")])
def test_resolve_is_case_insensitive(catalog, name, canonical):
    assert catalog.resolve(name) == catalog.resolve(canonical)


def test_resolve_prefix_needs_a_dash_boundary(catalog):
    # "A10" is its own model; it must not pull in the A100s.
    assert catalog.resolve("A10") == frozenset({"A10"})
    with pytest.raises(UnknownAccelerator):
        catalog.resolve("A1")


@pytest.mark.parametrize("name", ["B200", "", "gpu", "A100-160G", "nvidia-"])
def test_resolve_unknown_raises(catalog, name):
    with pytest.raises(UnknownAccelerator, match="unknown accelerator"):
        catalog.resolve(name)


def test_unknown_accelerator_is_a_value_error():
    assert issubclass(UnknownAccelerator, ValueError)


def test_parse_catalog_reads_a_row():
    cat = catalog_from_rows('X1-8G,X1|XONE,acme,alpha,8,,100,,,,PCIe,cuda,"Acme datasheet"')
    (entry,) = cat.models
    assert entry.model == "X1-8G"
    assert entry.aliases == ("X1", "XONE")
    assert entry.memory_gb == 8
    assert entry.fp16_tflops == 100
    assert entry.memory_bandwidth_gbs is None
    assert entry.fp32_tflops is None
    assert entry.int8_tops is None
    assert entry.tdp_w is None
    assert entry.source == "Acme datasheet"
    assert cat.resolve("xone") == frozenset({"X1-8G"})


def test_parse_catalog_rejects_row_without_source():
    with pytest.raises(ValueError, match="'X1-8G' names no source"):
        catalog_from_rows("X1-8G,,acme,alpha,8,,100,,,,PCIe,cuda,")


def test_parse_catalog_rejects_blank_source():
    with pytest.raises(ValueError, match="names no source"):
        catalog_from_rows('X1-8G,,acme,alpha,8,,100,,,,PCIe,cuda,"   "')


def test_parse_catalog_empty_memory_is_unknown():
    # Memory no source confirms stays empty, like every other figure: it parses to None, never to a guess.
    (entry,) = catalog_from_rows("X1,,acme,alpha,,,100,,,,PCIe,cuda,datasheet").models
    assert entry.memory_gb is None
    assert entry.fp16_tflops == 100
    (blank,) = catalog_from_rows('X2,,acme,alpha,  ,,,,,,PCIe,cuda,"datasheet, memory unknown"').models
    assert blank.memory_gb is None


def test_parse_catalog_memory_is_exact_when_given():
    (entry,) = catalog_from_rows("X1,,acme,alpha,32.5,,,,,,PCIe,cuda,datasheet").models
    assert entry.memory_gb == Fraction(65, 2)


def test_parse_catalog_rejects_bad_memory():
    with pytest.raises(ValueError):
        catalog_from_rows("X1,,acme,alpha,lots,,100,,,,PCIe,cuda,datasheet")


# A model whose FP16 rating is known but whose memory is not: the market prices it, and an offer's declared
# device memory stands, since the catalog has no capacity to bound it with.
_UNKNOWN_MEMORY = catalog_from_rows('X1,,acme,alpha,,,100,,,,PCIe,cuda,"Acme datasheet; memory unknown"',
                                    'X2-8G,,acme,alpha,8,,100,,,,PCIe,cuda,"Acme datasheet"')


def _offer(id: str, model: str, memory: int) -> Offer:
    return Offer(id=id, provider="p1", site="s1", region="r1", tier="hub", model=model,
                 device_memory_gb=Fraction(memory), devices=1, floor_fen_per_du=1)


def test_offer_of_a_model_with_unknown_memory_is_not_bounded_by_the_catalog():
    assert check_offer(_offer("o1", "X1", 48), _UNKNOWN_MEMORY) == Fraction(1, 10)
    book = build_book([], [_offer("o1", "X1", 16), _offer("o2", "X1", 48)], _UNKNOWN_MEMORY, at_ms=0)
    assert len(book.offers) == 2


def test_offer_above_known_memory_is_still_rejected():
    with pytest.raises(OrderError, match="more than X2-8G has"):
        check_offer(_offer("o1", "X2-8G", 16), _UNKNOWN_MEMORY)
    with pytest.raises(OrderError, match="more than X2-8G has"):
        build_book([], [_offer("o1", "X2-8G", 8), _offer("o2", "X2-8G", 16)], _UNKNOWN_MEMORY, at_ms=0)


def test_parse_catalog_rejects_short_row_without_source_column():
    with pytest.raises(ValueError, match="does not have the header's columns"):
        parse_catalog(CATALOG_HEADER + "\nX1-8G,,acme,alpha,8,,100\n")


def test_parse_catalog_empty_is_empty():
    cat = parse_catalog(CATALOG_HEADER + "\n")
    assert cat.models == ()
    with pytest.raises(UnknownAccelerator):
        cat.resolve("A100")
