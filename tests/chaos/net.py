"""A private network for a chaos run: one network namespace per node, joined
by veth links to a bridge in the runner's namespace, so that the runner can
cut any link between two nodes while still reaching every node itself.

Links are cut with nftables rules inside the namespaces (packets silently
dropped, as on a real network whose switch fails) when `nft` is installed,
and otherwise with blackhole routes (new connections fail at once, open
ones go silent). Both need root; `Network.available()` says whether this
machine can do it, and why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


class NetworkError(RuntimeError):
    pass


def _run(
    *cmd: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.returncode}")
    return proc


@dataclass
class Network:
    """`size` hosts named 0..size-1, each with its own namespace and address."""

    size: int
    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000:05d}")
    hosts: list[str] = field(init=False)
    addrs: list[str] = field(init=False)
    _cut: set[tuple[int, int]] = field(init=False, default_factory=set)
    _made: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        # Interface names are capped at 15 bytes; the tag keeps two runs on one
        # machine (or a leftover from a killed run) from colliding.
        subnet = 100 + int(self.tag) % 150
        self.subnet = f"10.{subnet}.{int(self.tag) % 250}"
        self.bridge = f"rqb{self.tag}"
        self.hosts = [f"rqchaos{self.tag}n{i}" for i in range(self.size)]
        self.addrs = [f"{self.subnet}.{10 + i}" for i in range(self.size)]
        self.use_nft = shutil.which("nft") is not None

    @staticmethod
    def available() -> tuple[bool, str]:
        if os.geteuid() != 0:
            return False, "not root"
        if shutil.which("ip") is None:
            return False, "iproute2's `ip` is not installed"
        probe = f"rqprobe{os.getpid() % 100000}"
        made = _run("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            return False, f"ip netns add failed: {made.stderr.strip()}"
        _run("ip", "netns", "del", probe, check=False)
        return True, "nftables" if shutil.which("nft") else "blackhole routes"

    # -- setup -------------------------------------------------------------------
    def create(self) -> Network:
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            self._made.append("bridge")
            _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for i in range(self.size):
                self.add_host(i)
        except BaseException:
            self.destroy()
            raise
        return self

    def add_host(self, i: int) -> None:
        ns, veth = self.hosts[i], f"rqv{self.tag}n{i}"
        _run("ip", "netns", "add", ns)
        self._made.append(ns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._made.append(f"veth:{veth}")
        _run("ip", "link", "set", veth, "master", self.bridge)
        _run("ip", "link", "set", veth, "up")
        _run("ip", "-n", ns, "addr", "add", f"{self.addrs[i]}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        if self.use_nft:
            _run(
                "ip", "netns", "exec", ns, "nft", "-f", "-",
                stdin=(
                    "table inet chaos {\n"
                    "  chain input { type filter hook input priority 0; }\n"
                    "  chain output { type filter hook output priority 0; }\n"
                    "}\n"
                ),
            )  # fmt: skip

    def destroy(self) -> None:
        """Remove everything this network made (namespaces take their rules
        with them)."""
        # Deleting a namespace frees its end of a veth pair only later, in the
        # kernel's own time; deleting the pair by its host end is immediate,
        # so that the same names can be made again at once.
        for name in reversed(self._made):
            if name == "bridge":
                _run("ip", "link", "del", self.bridge, check=False)
            elif name.startswith("veth:"):
                _run("ip", "link", "del", name.removeprefix("veth:"), check=False)
            else:
                _run("ip", "netns", "del", name, check=False)
        self._made.clear()
        self._cut.clear()

    def exec_prefix(self, i: int) -> list[str]:
        """Prefix a command with this to run it on host i. `ip netns exec`
        execs the command itself, so the child's PID is the command's."""
        return ["ip", "netns", "exec", self.hosts[i]]

    # -- faults ------------------------------------------------------------------
    def cut(self, a: int, b: int) -> None:
        """Drop every packet between hosts a and b, both ways."""
        for x, y in ((a, b), (b, a)):
            if (x, y) in self._cut:
                continue
            self._cut.add((x, y))
            self._rule(x, y, add=True)

    def partition(self, *groups: list[int]) -> None:
        """Hosts talk only within their group; a host in no group is isolated."""
        group_of = {h: g for g, hosts in enumerate(groups) for h in hosts}
        for a in range(self.size):
            for b in range(a + 1, self.size):
                ga, gb = group_of.get(a, -1 - a), group_of.get(b, -1 - b)
                if ga != gb:
                    self.cut(a, b)

    def heal(self) -> None:
        for x, y in sorted(self._cut):
            self._rule(x, y, add=False)
        self._cut.clear()

    @property
    def cut_links(self) -> set[tuple[int, int]]:
        return set(self._cut)

    def _rule(self, x: int, y: int, add: bool) -> None:
        """On host x, drop what goes to y and what comes from y."""
        ns, peer = self.hosts[x], self.addrs[y]
        if self.use_nft:
            if add:
                for chain, field_ in (("output", "daddr"), ("input", "saddr")):
                    _run(
                        "ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "chaos",
                        chain, "ip", field_, peer, "drop",
                    )  # fmt: skip
            else:
                for chain in ("output", "input"):
                    self._delete_nft_rules(ns, chain, peer)
        else:
            verb = "add" if add else "del"
            _run("ip", "-n", ns, "route", verb, "blackhole", f"{peer}/32", check=add)

    @staticmethod
    def _delete_nft_rules(ns: str, chain: str, peer: str) -> None:
        listing = _run(
            "ip", "netns", "exec", ns, "nft", "-a", "list", "chain", "inet", "chaos", chain
        )
        for line in listing.stdout.splitlines():
            if f" {peer} " in f" {line} " and "# handle" in line:
                handle = line.rsplit("# handle", 1)[1].strip()
                _run(
                    "ip", "netns", "exec", ns, "nft", "delete", "rule", "inet", "chaos",
                    chain, "handle", handle,
                )  # fmt: skip
