"""sim/openb.py and sim/fgd_protocol.py on small hand-made traces, and the `bench fgd` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from computegrid.cli.main import app
from computegrid.core.placement import PlacementRequest
from computegrid.sim.fgd_protocol import arrival_order, discretise, run_protocol, run_seed
from computegrid.sim.openb import OpenbPod, build_pool, pod_request, read_nodes, read_pods

NODES = """sn,cpu_milli,memory_mib,gpu,model
openb-node-0000,32000,262144,2,P100
openb-node-0001,96000,393216,8,G2
openb-node-0002,64000,262144,4,V100M32
"""
PODS = """name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec
openb-pod-0002,4000,1024,1,1000,
openb-pod-0001,2000,1024,1,500,V100M16|V100M32
openb-pod-0000,8000,2048,0,0,
openb-pod-0003,16000,4096,4,1000,
openb-pod-0004,1000,512,1,250,
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "pods.csv").write_text(PODS)
    return tmp_path / "nodes.csv", tmp_path / "pods.csv"


def test_read_and_convert(files):
    nodes, pods = read_nodes(files[0]), read_pods(files[1])
    assert [(n.gpus, n.model) for n in nodes] == [(2, "P100"), (8, "G2"), (4, "V100M32")]
    assert pod_request(pods[1]) == PlacementRequest(models=frozenset({"V100M16", "V100M32"}), milli_per_node=500,
                                                    cpu_milli=2000, memory_mb=1024)
    assert pod_request(pods[2]).milli_per_node == 0 and pod_request(pods[3]).devices_per_node == 4
    pool = build_pool(nodes)
    assert pool.node_count == 3 and len(pool.dev_free) == 14 and pool.dev_model[2] == "G2"


def test_bad_rows_name_their_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,two,1000\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        read_pods(bad)
    bad.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,2,500\n")
    with pytest.raises(ValueError, match="whole GPUs"):
        read_pods(bad)


def test_arrival_order_sorts_shuffles_and_stops_before_130_percent(files):
    pods = read_pods(files[1])
    order = arrival_order(pods, 10_000, np.random.default_rng(42))
    assert sorted(p.name for p in order[:5]) == [f"openb-pod-{i:04d}" for i in range(5)]
    assert order[:5] == arrival_order(list(reversed(pods)), 10_000, np.random.default_rng(42))[:5]
    total = sum(p.gpu_milli_total for p in order)
    assert total <= 13_000
    assert total + max(p.gpu_milli_total for p in pods) > 13_000  # it stopped at a copy that would pass 130%


def test_discretise_rounds_like_the_papers_analysis():
    # 10 GPUs: arrived 1% steps are 100 milli
    arrived = [40, 60, 100, 149, 151, 300]
    allocated = [40, 60, 100, 100, 151, 151]
    got = discretise(arrived, allocated, 10)
    assert got[0] == 0.4                        # 0.4% rounds to 0
    assert got[1] == round((0.6 + 1.0 + 1.0) / 3, 2)  # 0.6, 1.0, 1.49 round to 1
    assert got[2] == 1.51
    assert got[3] == 1.51                       # no event at 3%: 2..4% are used
    assert 10 not in got                        # nothing near 10%


def test_run_seed_is_deterministic_and_counts(files):
    nodes, pods = read_nodes(files[0]), read_pods(files[1])
    one = run_seed(nodes, pods, "fgd", 7)
    assert one.alloc_pct_at == run_seed(nodes, pods, "fgd", 7).alloc_pct_at
    assert one.placed <= one.pods and max(one.alloc_pct_at) <= 130
    result = run_protocol(nodes, pods, "random", [1, 2, 3]).as_json()
    assert result["policy"] == "random" and result["seeds"] == [1, 2, 3]
    assert set(result) >= {"alloc_pct_at", "unallocated_pct_at_100", "elapsed_s", "placements_per_s"}
    assert all(isinstance(k, str) for k in result["alloc_pct_at"])


def test_bench_fgd_command(files, tmp_path):
    out = tmp_path / "out.json"
    runner = CliRunner()
    got = runner.invoke(app, ["bench", "fgd", "--nodes", str(files[0]), "--pods", str(files[1]), "--policy",
                              "best-fit", "--seeds", "42-43", "--json", str(out)])
    assert got.exit_code == 0, got.output
    assert "seed 42" in got.output and "seed 43" in got.output
    data = json.loads(out.read_text())
    assert data["policy"] == "best-fit" and data["seeds"] == [42, 43]
    bad = runner.invoke(app, ["bench", "fgd", "--nodes", str(files[0]), "--pods", str(files[1]), "--policy", "nope"])
    assert bad.exit_code == 2 and "unknown policy" in bad.output
    bad = runner.invoke(app, ["bench", "fgd", "--nodes", str(files[0]), "--pods", str(files[1]), "--seeds", "9-3"])
    assert bad.exit_code != 0


def test_openb_pod_total():
    assert OpenbPod("p", 1, 1, 4, 1000, "").gpu_milli_total == 4000
