"""The Slurm backend keeps each rank of a gang apart: the batch script's task runs as every rank (srun starts
it once per node), and all but the first rank write their own file. Run here without Slurm: the task script
is executed as srun would on each node (SLURMD_NODENAME set), and `logs` reads each rank."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path

from computegrid.backends.base import NodePart, RunRequest
from computegrid.backends.slurm import SlurmBackend


def test_each_rank_of_a_gang_has_its_own_output(tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path / "work")
    run = RunRequest(job_id=5, attempt=1, nodes=3, run='echo "rank $COMPUTEGRID_NODE_RANK on $SLURMD_NODENAME"',
                     image=None, workdir=None, envs={}, milli_per_device=0, cpu_milli=1000, memory_mb=256,
                     parts=(NodePart(rank=1, hostname="n1"), NodePart(rank=2, hostname="n2")), name="gang")
    engine_id = backend.engine_id(run.job_id, run.attempt)
    root = tmp_path / "work" / engine_id
    root.mkdir(parents=True)
    backend._write_scripts(run, root)
    (root / "request.json").write_text(json.dumps({"request": asdict(run)}))  # as submit writes it
    with open(root / "output.log", "ab") as job_output:  # sbatch --output: what srun's tasks print
        for host in ("n1", "n2"):
            subprocess.run(["bash", str(root / "task.sh")], env=dict(os.environ, SLURMD_NODENAME=host),
                           stdout=job_output, stderr=subprocess.STDOUT, check=True)
    assert backend.logs(engine_id, 0).data == b"rank 1 on n1\n"  # the first part's: the job's output file
    assert backend.logs(engine_id, 0, rank=1).data == b"rank 1 on n1\n"
    assert backend.logs(engine_id, 0, rank=2).data == b"rank 2 on n2\n"
    assert backend.logs(engine_id, 5, rank=2).data == b"2 on n2\n"
    assert backend.logs(engine_id, 0, rank=0).data == b""  # rank 0 runs at another site
