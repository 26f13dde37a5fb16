"""The short chaos run CI does: about a minute of faults on a real 3-voter
cluster with a non-voter, all workloads, all checks. Longer runs:
`scripts/chaos.py --seconds N --seed S`. A failing run prints its report,
seed and the directory that keeps the nodes' logs and the history."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.net import Network
from tests.chaos.runner import RunConfig, run

SEED = int(os.environ.get("CHAOS_SEED", "1"))
NETNS, WHY_NOT = Network.available()


def test_short_chaos_run(tmp_path: Path) -> None:
    report = run(RunConfig(duration_s=60, seed=SEED, base=tmp_path))
    text = report.render()
    print(text)
    assert report.ok, text
    assert sum(report.faults.values()) >= 8, "too few faults for a minute"


def _connects(net: Network, src: int, dst: int, port: int) -> bool:
    """Can host src open a TCP connection to host dst within a second?"""
    code = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout(1)\n"
        f"sys.exit(0 if s.connect_ex(({net.addrs[dst]!r},{port}))==0 else 1)\n"
    )
    return subprocess.run([*net.exec_prefix(src), sys.executable, "-c", code]).returncode == 0


@pytest.mark.skipif(not NETNS, reason=WHY_NOT)
@pytest.mark.parametrize("mechanism", ["nftables", "blackhole routes"])
def test_partitions_cut_exactly_the_links_asked_for(mechanism: str) -> None:
    net = Network(3, tag=f"{os.getpid() % 90000 + 10000}")
    if mechanism == "nftables" and not net.use_nft:
        pytest.skip("nft is not installed")
    net.use_nft = mechanism == "nftables"
    net.create()
    servers = []
    try:
        for i in range(3):
            code = (
                "import socket,time\n"
                f"s=socket.socket(); s.bind(({net.addrs[i]!r},7070)); s.listen(64)\n"
                "print('up', flush=True)\n"
                "while True: s.accept()\n"
            )
            p = subprocess.Popen(
                [*net.exec_prefix(i), sys.executable, "-c", code], stdout=subprocess.PIPE
            )
            assert p.stdout is not None and p.stdout.readline() == b"up\n"
            servers.append(p)
        assert all(_connects(net, a, b, 7070) for a in range(3) for b in range(3) if a != b)
        net.partition([0], [1, 2])
        assert not _connects(net, 0, 1, 7070) and not _connects(net, 2, 0, 7070)
        assert _connects(net, 1, 2, 7070) and _connects(net, 2, 1, 7070)
        # The runner itself still reaches every host.
        with socket.create_connection((net.addrs[0], 7070), timeout=2):
            pass
        net.heal()
        net.cut(1, 2)
        assert _connects(net, 0, 1, 7070) and _connects(net, 0, 2, 7070)
        assert not _connects(net, 1, 2, 7070)
        net.heal()
        assert all(_connects(net, a, b, 7070) for a in range(3) for b in range(3) if a != b)
    finally:
        for p in servers:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        net.destroy()
