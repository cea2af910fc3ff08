"""The shipped accelerator catalog data (data/accelerators.csv): coverage, sources, and sanity of the figures."""

from __future__ import annotations

from fractions import Fraction

import pytest

from computegrid.core.catalog import default_catalog

EXISTING = {"P100-16G", "V100-16G", "V100-32G", "T4", "A10", "A100-40G", "A100-80G", "H100-80G", "L40S", "MI250X",
            "MI300X"}
NEW = {"K80", "A800-80G", "A800-40G", "H800-80G", "H20", "L20", "L4", "RTX4090", "H200-141G", "Ascend910B",
       "Ascend910B-32G", "Ascend310P", "MLU370-X8", "MLU290-M5", "MTT-S4000", "MTT-S5000", "BR104", "BR100",
       "BI-V100", "K200"}
# Added once memory could be left unknown (docs/catalog.md, "Requested but not listed" before).
ADDED = {"MLU590", "DCU-Z100", "DCU-K100", "R200", "P800", "BI-V150", "S60"}
# Every model the catalog issue names, as the issue names it, and the rows that name stands for: a match is the
# model name, an alias, or a prefix group (`A800` for every `A800-*`), compared case-insensitively.
ISSUE_MODELS = {
    "V100": {"V100-16G", "V100-32G"}, "T4": {"T4"}, "A10": {"A10"}, "A100-40G": {"A100-40G"},
    "A100-80G": {"A100-80G"}, "A800": {"A800-80G", "A800-40G"}, "H100": {"H100-80G"}, "H800": {"H800-80G"},
    "H20": {"H20"}, "L20": {"L20"}, "L40S": {"L40S"}, "RTX 4090": {"RTX4090"},
    "MI250X": {"MI250X"}, "MI300X": {"MI300X"},
    "910B": {"Ascend910B"}, "310P": {"Ascend310P"},
    "MLU370": {"MLU370-X8"}, "MLU590": {"MLU590"},
    "Z100": {"DCU-Z100"}, "K100": {"DCU-K100"},
    "R200": {"R200"}, "P800": {"P800"},
    "S4000": {"MTT-S4000"}, "BI-V150": {"BI-V150"}, "S60": {"S60"}, "BR104": {"BR104"},
}
VENDORS = {"nvidia", "amd", "huawei", "cambricon", "hygon", "kunlunxin", "moorethreads", "iluvatar", "enflame",
           "biren"}
SOFTWARE = {"cuda", "rocm", "cann", "neuware", "dtk", "xpu", "musa", "corex", "tops", "suprt"}
# FP16 tensor figures NVIDIA quotes *with sparsity*; a dense column must never hold one of them.
NVIDIA_SPARSE_FP16 = {Fraction(624), Fraction(1979), Fraction("1978.9"), Fraction(250), Fraction(733),
                      Fraction("724.1"), Fraction("330.3"), Fraction("330.30"), Fraction(296), Fraction("623.8"),
                      Fraction("623.74"), Fraction(1970)}


@pytest.fixture(scope="module")
def catalog():
    return default_catalog()


def test_at_least_30_models(catalog):
    assert len(catalog.models) >= 30
    assert len(set(catalog.names)) == len(catalog.names)


def test_named_models_present(catalog):
    assert set(catalog.names) >= EXISTING | NEW | ADDED


def _named_by(catalog, name):
    key = name.lower()
    return {e.model for e in catalog.models
            if key == e.model.lower() or key in (a.lower() for a in e.aliases) or e.model.lower().startswith(key + "-")}


@pytest.mark.parametrize(("name", "expected"), sorted(ISSUE_MODELS.items()))
def test_every_model_the_issue_names_is_present(catalog, name, expected):
    assert _named_by(catalog, name) == expected
    assert catalog.resolve(name) == frozenset(expected)


def test_every_row_names_a_source(catalog):
    for e in catalog.models:
        assert e.source.strip(), e.model


def test_existing_aliases_unchanged(catalog):
    assert catalog.get("P100").model == "P100-16G"
    assert catalog.get("V100M16").model == "V100-16G"
    assert catalog.get("V100M32").model == "V100-32G"
    assert catalog.get("H100").model == "H100-80G"


def test_every_row_names_a_specific_source(catalog):
    for e in catalog.models:
        assert len(e.source.strip()) > 30, e.model
        assert "/" in e.source, f"{e.model}: the source should name a page or document path"


def test_unknown_figures_say_why(catalog):
    # A row missing a rate that du or placement relies on must say in its source what is unknown.
    for e in catalog.models:
        if e.fp16_tflops is None or e.tdp_w is None:
            assert "nknown" in e.source, e.model


def test_lowercase_vendor_family_and_known_stacks(catalog):
    for e in catalog.models:
        assert e.vendor in VENDORS, e.model
        assert e.family and e.family == e.family.lower(), e.model
        assert e.software in SOFTWARE, e.model


def test_figures_positive_when_present(catalog):
    for e in catalog.models:
        for figure in (e.memory_gb, e.memory_bandwidth_gbs, e.fp16_tflops, e.fp32_tflops, e.int8_tops, e.tdp_w):
            assert figure is None or figure > 0, e.model


def test_unknown_memory_is_empty_and_says_why(catalog):
    unknown = {e.model for e in catalog.models if e.memory_gb is None}
    assert unknown == {"MLU590", "DCU-Z100", "R200", "BI-V150"}
    for model in unknown:
        source = catalog.get(model).source
        assert "nknown: memory" in source, model
        assert "datasheet was retrieved" in source, model  # says no vendor document was found


def test_added_rows_hold_only_sourced_figures(catalog):
    k100 = catalog.get("K100")
    assert (k100.memory_gb, k100.fp16_tflops, k100.fp32_tflops, k100.int8_tops) == (64, 100, Fraction("24.5"), 200)
    assert k100.memory_bandwidth_gbs is None and k100.tdp_w is None
    assert catalog.get("P800").memory_gb == 96
    assert catalog.get("S60").memory_gb == 48
    for model in ("P800", "S60"):
        e = catalog.get(model)
        assert (e.memory_bandwidth_gbs, e.fp16_tflops, e.fp32_tflops, e.int8_tops, e.tdp_w) == (None,) * 5, model
    for model in ("MLU590", "DCU-Z100", "R200", "BI-V150"):
        e = catalog.get(model)
        figures = (e.memory_gb, e.memory_bandwidth_gbs, e.fp16_tflops, e.fp32_tflops, e.int8_tops, e.tdp_w)
        assert figures == (None,) * 6, model


def test_dense_not_sparse_fp16(catalog):
    assert catalog.get("H100-80G").fp16_tflops == Fraction("989.5")
    assert catalog.get("H800-80G").fp16_tflops == Fraction("989.5")
    assert catalog.get("H200-141G").fp16_tflops == Fraction("989.5")
    assert catalog.get("A800-80G").fp16_tflops == Fraction(312)
    assert catalog.get("RTX4090").fp16_tflops == Fraction("165.15")
    assert catalog.get("H20").fp16_tflops == Fraction(148)
    for e in catalog.models:
        if e.vendor == "nvidia":
            assert e.fp16_tflops not in NVIDIA_SPARSE_FP16, e.model


def test_dense_fp16_never_exceeds_int8_and_fp32_never_exceeds_fp16(catalog):
    # Sanity of units: a dense FP16 tensor rate sits between the FP32 vector rate and the INT8 rate.
    for e in catalog.models:
        if e.fp16_tflops is not None and e.int8_tops is not None:
            assert e.fp16_tflops <= e.int8_tops, e.model
        if e.fp16_tflops is not None and e.fp32_tflops is not None:
            assert e.fp32_tflops <= e.fp16_tflops, e.model


def test_unconfirmed_figures_are_unknown(catalog):
    # Vendors publish no dense FP16 for these (see docs/catalog.md): du is reported unknown for them.
    for model in ("Ascend910B", "Ascend910B-32G", "Ascend310P", "L20", "L4", "K80", "MLU290-M5", "MTT-S5000",
                  "MLU590", "DCU-Z100", "R200", "P800", "BI-V150", "S60"):
        assert catalog.get(model).fp16_tflops is None, model
    assert catalog.get("Ascend910B").tdp_w is None
    assert catalog.get("H800-80G").tdp_w is None
    assert catalog.get("BR100").memory_bandwidth_gbs is None


def test_aliases_unique_across_models(catalog):
    seen: dict[str, str] = {}
    names = {n.lower() for n in catalog.names}
    for e in catalog.models:
        for alias in e.aliases:
            key = alias.lower()
            assert key not in seen, f"alias {alias!r} of {e.model} also belongs to {seen[key]}"
            assert key not in names or key == e.model.lower(), f"alias {alias!r} of {e.model} is another model's name"
            seen[key] = e.model


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("A800", {"A800-80G", "A800-40G"}),
        ("H800", {"H800-80G"}),
        ("h20", {"H20"}),
        ("H200", {"H200-141G"}),
        ("RTX 4090", {"RTX4090"}),
        ("4090", {"RTX4090"}),
        ("910b", {"Ascend910B"}),
        ("Ascend910B", {"Ascend910B", "Ascend910B-32G"}),
        ("310P", {"Ascend310P"}),
        ("MLU370", {"MLU370-X8"}),
        ("mlu370x8", {"MLU370-X8"}),
        ("MTT", {"MTT-S4000", "MTT-S5000"}),
        ("S4000", {"MTT-S4000"}),
        ("cambricon", {"MLU370-X8", "MLU290-M5", "MLU590"}),
        ("hygon", {"DCU-Z100", "DCU-K100"}),
        ("dcu", {"DCU-Z100", "DCU-K100"}),
        ("kunlunxin", {"K200", "R200", "P800"}),
        ("iluvatar", {"BI-V100", "BI-V150"}),
        ("enflame", {"S60"}),
        ("Enflame S60", {"S60"}),
        ("P800 OAM", {"P800"}),
        ("Tiangai150", {"BI-V150"}),
        ("huawei", {"Ascend910B", "Ascend910B-32G", "Ascend310P"}),
        ("davinci", {"Ascend910B", "Ascend910B-32G", "Ascend310P"}),
        ("hopper", {"H100-80G", "H800-80G", "H20", "H200-141G"}),
        ("biren", {"BR104", "BR100"}),
        ("Tiangai100", {"BI-V100"}),
        ("K80", {"K80"}),
    ],
)
def test_resolve_new_names_and_aliases(catalog, name, expected):
    assert catalog.resolve(name) == frozenset(expected)


def test_get_new_aliases(catalog):
    assert catalog.get("RTX 4090").model == "RTX4090"
    assert catalog.get("H800").model == "H800-80G"
    assert catalog.get("Atlas300IA2").model == "Ascend910B-32G"
