"""core.regions: the shared region table, operators' overrides merged into it, and close-match messages."""

from __future__ import annotations

from computegrid.core.placement.base import rtt_between
from computegrid.core.regions import close_matches, default_regions, default_rtt, merge_rtt, unknown_region_message
from computegrid.sim import regions as sim_regions


def test_the_simulator_reads_the_same_table() -> None:
    assert sim_regions.default_rtt() == default_rtt()
    assert sim_regions.default_regions() == default_regions()


def test_overrides_replace_a_pair_in_either_direction_and_add_new_ones() -> None:
    base = default_rtt()
    assert ("guizhou", "greater-bay") in base and base[("guizhou", "greater-bay")] == 15
    merged = merge_rtt(base, [("greater-bay", "guizhou", 40), ("hohhot-lab", "inner-mongolia", 3)])
    assert rtt_between(merged, "greater-bay", "guizhou") == rtt_between(merged, "guizhou", "greater-bay") == 40
    assert ("greater-bay", "guizhou") not in merged  # replaced where it was stored, not duplicated
    assert rtt_between(merged, "inner-mongolia", "hohhot-lab") == 3
    assert len(merged) == len(base) + 1
    assert base[("guizhou", "greater-bay")] == 15  # the input is not changed


def test_an_unknown_name_is_answered_with_close_matches() -> None:
    names = {r.name for r in default_regions()}
    assert close_matches("greater-bey", names)[0] == "greater-bay"
    assert "did you mean: shanghai" in unknown_region_message("shangai", names)
    far = unknown_region_message("atlantis", names)
    assert far.startswith("unknown region 'atlantis'; known regions: ") and "beijing" in far
