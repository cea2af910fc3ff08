"""sim/traces.py, sim/pools.py and sim/regions.py: clear errors on bad files, the site rule, the data tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from computegrid.cli.sim import sim_app
from computegrid.core.catalog import default_catalog
from computegrid.sim.pools import (
    PoolError,
    PoolNode,
    find_data_dir,
    load_pool,
    read_inventory,
    spread_over_sites,
    tier_sites,
)
from computegrid.sim.regions import default_regions, default_rtt, rtt_csv
from computegrid.sim.traces import TraceError, compress, load_csv, load_trace

HUBS = {"inner-mongolia", "guizhou", "gansu", "ningxia", "jingjinji", "yangtze-delta", "greater-bay",
        "chengdu-chongqing"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_generic_trace_sorts_by_arrival_and_counts_skipped_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "timestamp,duration,num_gpus,group\n"
                                    "100,10,2,a\n50,5.5,1,b\n60,7,0,c\n70,0,1,c\n\n80,3,4,\n")
    t = load_csv(path)
    assert t.arrival_ms.tolist() == [0, 30_000, 50_000]
    assert t.duration_ms.tolist() == [5_500, 3_000, 10_000]
    assert t.gpus.tolist() == [1, 4, 2] and t.group == ["b", "", "a"]
    assert t.line.tolist() == [3, 7, 2]
    assert t.skipped == {"no GPUs": 1, "duration <= 0 s": 1} and t.rows == 5
    assert compress(t, 10).arrival_ms.tolist() == [0, 3_000, 5_000]


def test_iso_timestamps_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "timestamp,duration,num_gpus\n2017-10-09 07:01:55,66.0,1\n"
                                    "2017-10-09 07:00:55,1,1\n")
    assert load_csv(path).arrival_ms.tolist() == [0, 60_000]


@pytest.mark.parametrize(("text", "message"), [
    ("timestamp,duration,num_gpus\n0,abc,1\n", "t.csv:2: column 'duration': 'abc' is not a number"),
    ("timestamp,duration,num_gpus\n0,1,1\nyesterday,1,1\n", "t.csv:3: column 'timestamp': 'yesterday' is not"),
    ("timestamp,duration,num_gpus\n0,1,1.5\n", "t.csv:2: column 'num_gpus': '1.5' is not a whole number"),
    ("timestamp,duration,num_gpus\n0,1,-2\n", "t.csv:2: column 'num_gpus': -2 is negative"),
    ("timestamp,duration,num_gpus\n0,1\n", "t.csv:2: 2 columns, the header has 3"),
    ("timestamp,runtime,num_gpus\n0,1,1\n", "t.csv:1: the header lacks column 'duration'"),
    ("timestamp,duration,num_gpus\n0,nan,1\n", "column 'duration': 'nan' is not a finite number"),
    ("", "t.csv: the file is empty"),
    ("timestamp,duration,num_gpus\n0,1,0\n", "no job to replay (1 rows, 1 skipped: no GPUs: 1)"),
])
def test_bad_traces_name_file_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TraceError) as info:
        load_csv(write(tmp_path, "t.csv", text))
    assert message in str(info.value)


def test_a_missing_trace_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such trace file"):
        load_trace(str(tmp_path / "nope.csv"))


def test_node_lists_in_both_formats(tmp_path: Path) -> None:
    openb = read_inventory(write(tmp_path, "o.csv", "sn,cpu_milli,memory_mib,gpu,model\n"
                                                    "n0,64000,262144,2,V100M32\nn1,32000,1024,0,\nn2,8000,1024,8,G2\n"))
    assert [(n.devices, n.model, n.device_memory_gb) for n in openb] == [(2, "V100-32G", 32.0), (0, "", 0.0),
                                                                         (8, "G2", 0.0)]
    spot = read_inventory(write(tmp_path, "s.csv", "gpu_model,gpu_capacity_num,cpu_num,node_name\n"
                                                   "H800,8,192,0\nGPU-series-2,8,192,1\n"))
    assert [(n.model, n.cpu_milli, n.memory_mb) for n in spot] == [("H800-80G", 192_000, 0),
                                                                   ("GPU-series-2", 192_000, 0)]
    catalog = default_catalog()
    assert catalog.get("H800-80G").fp16_tflops is not None


@pytest.mark.parametrize(("text", "message"), [
    ("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,1024,x,T4\n", "p.csv:2: column 'gpu': 'x' is not a whole number"),
    ("sn,cpu_milli,memory_mib,gpu,model\nn0,-1,1024,1,T4\n", "p.csv:2: column 'cpu_milli': -1 is below 0"),
    ("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,1024,2,\n", "p.csv:2: column 'model': a node with 2 devices"),
    ("name,cpus\nn0,1\n", "p.csv:1: not a node list"),
    ("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,1024,0,\n", "the node list has no device"),
    ("gpu_model,gpu_capacity_num,cpu_num,node_name\nA10,one,128,0\n", "p.csv:2: column 'gpu_capacity_num'"),
])
def test_bad_node_lists_name_file_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PoolError) as info:
        read_inventory(write(tmp_path, "p.csv", text))
    assert message in str(info.value)


def nodes(*devices: int) -> list[PoolNode]:
    return [PoolNode(f"n{i}", 1000, 0, d, "A10", 24.0) for i, d in enumerate(devices)]


def test_site_rule_tiers_and_turns() -> None:
    order = tier_sites(default_regions())
    assert len(order["hub"]) == 12 and {s.region for s in order["hub"]} == HUBS  # western hubs twice
    sites = spread_over_sites(nodes(8, 1, 1, 1, 1, 4, 0, 2, 16))
    assert [s.tier for s in sites] == ["hub", "core", "core", "core", "edge", "core", "core", "core", "hub"]
    assert sites[0].name == "hub-inner-mongolia" and sites[8].name == "hub-guizhou"
    assert sites[1].region != sites[2].region  # dealt round-robin
    assert spread_over_sites(nodes(8, 1, 1, 1, 1, 4, 0, 2, 16)) == sites


def test_site_rule_covers_every_region_given_enough_nodes() -> None:
    regions = default_regions()
    sites = spread_over_sites(nodes(*([8] * 12 + [1] * 32)))
    assert {s.region for s in sites} == {r.name for r in regions}


@pytest.mark.parametrize("name", ["alibaba-spot", "openb"])
def test_named_pools_cover_every_region(name: str) -> None:
    try:
        data = find_data_dir()
    except PoolError:
        pytest.skip("the shared data folder is not here")
    sim = load_pool(name, data)
    assert {s.region for s in sim.sites} == {r.name for r in default_regions()}
    assert (len(sim.nodes), sim.devices) == ({"alibaba-spot": (4278, 10_412), "openb": (1213, 6212)}[name])
    assert sim.opaque_models == {"alibaba-spot": ("GPU-series-1", "GPU-series-2"), "openb": ("G2", "G3")}[name]


def test_regions_table_names_a_source_for_every_price() -> None:
    regions = default_regions()
    assert {r.name for r in regions if r.kind == "hub"} == HUBS
    assert all(r.price_source.strip() and r.electricity_fen_per_kwh > 0 for r in regions)
    assert {r.price_basis for r in regions} <= {"sourced", "proxy", "estimate"}
    assert {r.tier for r in regions} == {"hub", "core", "edge"}


def test_rtt_file_is_the_documented_estimate() -> None:
    from importlib import resources

    text = resources.files("computegrid.core.data").joinpath("region_rtt_ms.csv").read_text("utf-8")
    assert text == rtt_csv(default_regions())
    assert "ESTIMATE" in text
    rtt = default_rtt()
    n = len(default_regions())
    assert len(rtt) == n * (n - 1) // 2 and all(v > 0 for v in rtt.values())
    assert rtt[("jingjinji", "beijing")] < rtt[("ningxia", "shenzhen")]


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(sim_app, name="sim")
    return app


def test_cli_replays_a_csv_trace_on_a_csv_pool(tmp_path: Path) -> None:
    trace = write(tmp_path, "t.csv", "timestamp,duration,num_gpus\n0,100,1\n1,50,1\n2,10,1\n")
    nodes_csv = write(tmp_path, "n.csv", "sn,cpu_milli,memory_mib,gpu,model\nn0,8000,1024,1,T4\n")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli(), ["sim", "replay", "--trace", str(trace), "--pool", str(nodes_csv),
                                        "--queue", "sjf", "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "average JCT" in result.output and "p95 wait" in result.output
    import json

    figures = json.loads(out.read_text())
    assert figures["avg_jct_s"] == pytest.approx((100 + 159 + 108) / 3, abs=1e-3)
    assert figures["queue"] == "sjf" and figures["jobs"] == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--trace", "{tmp}/bad.csv"], "bad.csv:2: column 'duration'"),
    (["--pool", "{tmp}/missing.csv"], "no such node list"),
    (["--queue", "lifo"], "unknown queue policy 'lifo'"),
    (["--policy", "worst-fit"], "unknown placement policy 'worst-fit'"),
    (["--speedup", "0"], "--speedup must be above 0"),
    (["--json", "{tmp}/no/such/dir/r.json"], "does not exist"),
])
def test_cli_errors_exit_2_without_a_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    write(tmp_path, "bad.csv", "timestamp,duration,num_gpus\n0,abc,1\n")
    good = write(tmp_path, "good.csv", "timestamp,duration,num_gpus\n0,1,1\n")
    pool_csv = write(tmp_path, "n.csv", "sn,cpu_milli,memory_mib,gpu,model\nn0,8000,1024,1,T4\n")
    base = ["sim", "replay", "--trace", str(good), "--pool", str(pool_csv), "--quiet"]
    result = CliRunner().invoke(cli(), base + [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
