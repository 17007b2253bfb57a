"""Network namespaces for outage tests: clients on a private bridge, links cut at will.

``NetLab`` makes one bridge in the root namespace with an address in a free private
``10.x.y.0/24`` (the server binds there and nowhere else), and one namespace per
client, joined to the bridge by a veth pair. ``outage(name, True)`` takes that client's
bridge port out of forwarding: every packet to or from the client vanishes, in both
directions, while both interfaces stay up — no carrier loss, no route change, no
unreachable error and no TCP reset on either side, as when a link somewhere on the way
fails. Neighbour entries are static, so ARP does not time out into local errors either.

Cutting the port (``bridge link set … state``) works where ``tc netem`` is missing and
needs neither nftables nor iptables. Everything made is removed on exit, also after a
failure half-way through setting up; ``netlab`` skips a test with the reason when it
cannot run (not root, no ``ip``, no bridge support).

    with NetLab(["kiosk", "agent"]) as lab:
        lab.host                        # "10.x.y.1": bind the server here
        lab.ns("kiosk")                 # namespace name, for `ip netns exec`
        lab.outage("kiosk", True)       # link gone ...
        lab.outage("kiosk", False)      # ... and back
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

BRIDGE_FORWARDING = "forwarding"
BRIDGE_DISABLED = "disabled"


class NetLabError(RuntimeError):
    """A namespace, link or address could not be set up (the command and its output)."""


class NetLabUnsupportedError(NetLabError):
    """This kernel cannot make the bridge the clients hang off."""


def unavailable_reason() -> str | None:
    """Why a ``NetLab`` cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "bridge"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command (iproute2) is missing"
    return None


def _run(*args: str, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise NetLabError(f"{' '.join(args)!r} failed: {proc.stderr.strip()}")
    return proc.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no interface here already overlaps."""
    used = []
    for entry in json.loads(_run("ip", "-j", "-4", "addr", "show") or "[]"):
        for addr in entry.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}",
                                             strict=False))
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{secrets.randbelow(200) + 40}."
                                    f"{secrets.randbelow(254) + 1}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetLabError("no free 10.x.y.0/24 subnet")


@dataclass(frozen=True)
class Member:
    name: str
    namespace: str
    address: str
    root_link: str  # the bridge port in the root namespace


class NetLab:
    """A bridge in the root namespace and one client namespace per name (see module)."""

    def __init__(self, names: Sequence[str]) -> None:
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"names must be distinct and not empty: {list(names)!r}")
        self.names = list(names)
        self.tag = f"vw{secrets.token_hex(3)}"  # + 3 chars stays within IFNAMSIZ (15)
        self.bridge = f"{self.tag}br"
        self.subnet = _free_subnet()
        hosts = list(self.subnet.hosts())
        self.host = str(hosts[0])
        self.members = {
            name: Member(name=name, namespace=f"{self.tag}-{name}", address=str(hosts[9 + i]),
                         root_link=f"{self.tag}r{i}")
            for i, name in enumerate(self.names)
        }
        self._made_bridge = False
        self._made_ns: list[str] = []

    def __enter__(self) -> NetLab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def ns(self, name: str) -> str:
        return self.members[name].namespace

    def address(self, name: str) -> str:
        return self.members[name].address

    def outage(self, name: str, on: bool) -> None:
        """Cut (``on``) or restore ``name``'s link: its packets vanish both ways."""
        member = self.members[name]
        state = BRIDGE_DISABLED if on else BRIDGE_FORWARDING
        _run("bridge", "link", "set", "dev", member.root_link, "state", state)
        if self.port_state(name) != state:
            raise NetLabError(f"{member.root_link!r} did not go {state!r}")

    def port_state(self, name: str) -> str:
        link = self.members[name].root_link
        ports = json.loads(_run("bridge", "-j", "link", "show", "dev", link) or "[]")
        return str(ports[0]["state"]) if ports else "missing"

    def chromium_wrapper(self, name: str, chromium: str, directory: Path) -> Path:
        """A script that starts ``chromium`` inside ``name``'s namespace, arguments passed
        through (Playwright talks to it over inherited pipes, which ``ip netns exec``
        keeps open)."""
        path = directory / f"chromium-{self.ns(name)}"
        path.write_text("#!/bin/sh\n"
                        f"exec ip netns exec {self.ns(name)} {chromium} \"$@\"\n")
        path.chmod(0o755)
        return path

    def close(self) -> None:
        """Remove every namespace (their veth ends go with them) and the bridge."""
        errors = []
        for ns in reversed(self._made_ns):
            proc = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True,
                                  timeout=20)
            if proc.returncode != 0:
                errors.append(f"{ns}: {proc.stderr.strip()}")
        self._made_ns.clear()
        for member in self.members.values():  # a pair whose namespace end was never moved
            subprocess.run(["ip", "link", "del", member.root_link], capture_output=True,
                           timeout=20)
        if self._made_bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)
            self._made_bridge = False
        if errors:
            raise NetLabError("could not remove " + "; ".join(errors))

    def _setup(self) -> None:
        prefix = self.subnet.prefixlen
        try:
            # A fixed address: a bridge otherwise takes its ports' lowest one, changing
            # under the static neighbour entries below as ports come.
            _run("ip", "link", "add", self.bridge, "address", self._random_mac(), "type",
                 "bridge", "stp_state", "0", "forward_delay", "0")
        except NetLabError as err:
            raise NetLabUnsupportedError(str(err)) from err
        self._made_bridge = True
        _run("ip", "addr", "add", f"{self.host}/{prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        bridge_mac = self._mac(self.bridge)
        for member in self.members.values():
            ns, inner = member.namespace, f"{self.tag}n"
            _run("ip", "netns", "add", ns)
            self._made_ns.append(ns)
            _run("ip", "link", "add", member.root_link, "type", "veth", "peer", "name", inner,
                 "netns", ns)
            _run("ip", "link", "set", member.root_link, "master", self.bridge)
            _run("ip", "link", "set", member.root_link, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "addr", "add", f"{member.address}/{prefix}", "dev", inner)
            _run("ip", "-n", ns, "link", "set", inner, "up")
            # Static neighbours both ways: an outage must not turn into ARP failures,
            # whose local "host unreachable" errors a real far-away outage never gives.
            _run("ip", "-n", ns, "neigh", "replace", self.host, "lladdr", bridge_mac,
                 "dev", inner, "nud", "permanent")
            _run("ip", "neigh", "replace", member.address, "lladdr",
                 self._mac(inner, ns), "dev", self.bridge, "nud", "permanent")

    @staticmethod
    def _random_mac() -> str:
        return "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))  # local unicast

    @staticmethod
    def _mac(link: str, ns: str | None = None) -> str:
        cmd = ["ip", "-j"] + (["-n", ns] if ns else []) + ["link", "show", "dev", link]
        return str(json.loads(_run(*cmd))[0]["address"])


@pytest.fixture
def netlab(request: pytest.FixtureRequest) -> Iterator[NetLab]:
    """Namespaces ``kiosk`` and ``agent`` (or ``request.param``'s names) on one bridge;
    the test is skipped, with the reason, where they cannot be made."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    names: Sequence[str] = getattr(request, "param", ("kiosk", "agent"))
    try:
        lab = NetLab(names).__enter__()
    except NetLabUnsupportedError as err:
        pytest.skip(f"no bridge support here: {err}")
    try:
        yield lab
    finally:
        lab.close()
