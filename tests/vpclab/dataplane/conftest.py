"""Root-only data plane tests: skipped with the reason when the machine cannot run namespaces."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from vpclab import Lab
from vpclab.dataplane import kernel

_REASON = kernel.unavailable_reason()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/vpclab/dataplane" in str(item.fspath):
            item.add_marker(pytest.mark.root)
            if _REASON:
                item.add_marker(pytest.mark.skip(reason=f"data plane unavailable: {_REASON}"))


def lab_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(prefix + "-")]


class Host:
    def __init__(self, lab: Lab):
        self.lab = lab

    def ns(self, host: str) -> str:
        return self.lab.dataplane.hosts()[host]

    def sh(self, host: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], capture_output=True, text=True,
                              timeout=timeout)

    def egress(self, host: str) -> str | None:
        """The address the internet's echo service sees for a connection the host starts."""
        r = self.sh(host, "python3", "-c", "import urllib.request as u;"
                    "print(u.urlopen('http://192.0.2.10/', timeout=3).read().decode())")
        if r.returncode != 0:
            return None
        return r.stdout.split("：", 1)[1].split()[0] if "：" in r.stdout else None

    def inbound(self, ip: str, port: int = 22, timeout: float = 2.0) -> str | None:
        """A real TCP connection from the internet's operator host: the banner, or None."""
        r = self.sh("operator", "python3", "-c",
                    f"import socket;s=socket.create_connection(('{ip}',{port}),{timeout});"
                    "s.settimeout(2);print(s.recv(200).decode().strip())")
        return r.stdout.strip() if r.returncode == 0 else None


@pytest.fixture
def dp_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    from tests.egressctl.conftest import SEED

    lab = Lab(SEED, dataplane="on")
    lab.start()
    prefix = lab.dataplane.prefix
    try:
        yield lab
    finally:
        lab.stop()
        left = lab_namespaces(prefix)
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def host(dp_lab: Lab) -> Host:
    return Host(dp_lab)
