"""Thin, explicit access to the kernel: network namespaces, ``ip``, ``nft``, sysctl, and sockets
opened inside a namespace.  Every name this module touches is passed in by the caller, who owns a
unique prefix; nothing here lists or deletes namespaces it was not given.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Sequence

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


class KernelError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why the data plane cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    for tool in ("ip", "nft", "unshare", "sysctl"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is missing (apt-get install iproute2 nftables util-linux procps)"
    probe = f"vlprobe{os.getpid()}"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if p.returncode != 0:
        return f"cannot create a network namespace: {p.stderr.strip()}"
    try:
        q = subprocess.run(["ip", "netns", "exec", probe, "nft", "list", "tables"], capture_output=True, text=True)
        if q.returncode != 0:
            return f"nftables does not work in a namespace: {q.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise KernelError(f"{' '.join(argv[:6])}{' ...' if len(argv) > 6 else ''}: "
                          f"{(p.stderr or p.stdout).strip()[:500]}")
    return p


def ns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def ns_add(name: str) -> None:
    if not ns_exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def ns_del(name: str) -> None:
    if ns_exists(name):
        run(["ip", "netns", "del", name], check=False)


def ip_batch(ns: str, commands: list[str], *, force: bool = False) -> None:
    """Run iproute2 commands in one process (``-force`` keeps going past errors the caller expects)."""
    if not commands:
        return
    argv = ["ip", "-n", ns, *(["-force"] if force else []), "-batch", "-"]
    run(argv, input="\n".join(commands) + "\n", check=not force)


def ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", "-n", ns, *args], check=check)


def nft(ns: str, ruleset: str) -> None:
    run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset)


def sysctl(ns: str, *assignments: str) -> None:
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *assignments])


_setns_lock = threading.Lock()
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def socket_in(ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside namespace ``ns`` (it stays there, whichever thread uses it later).

    ``setns`` only changes the calling thread, so a short-lived thread enters the namespace, creates
    the socket and ends; the process's other threads never leave their namespace.
    """
    result: dict[str, object] = {}

    def worker() -> None:
        try:
            with open(os.path.join(NETNS_DIR, ns)) as f:
                _setns(f.fileno())
            result["sock"] = socket.socket(family, kind)
        except OSError as e:
            result["err"] = e

    with _setns_lock:
        t = threading.Thread(target=worker, name=f"setns-{ns}")
        t.start()
        t.join()
    if "err" in result:
        raise KernelError(f"cannot open a socket in {ns}: {result['err']}")
    return result["sock"]  # type: ignore[return-value]


def listener(ns: str, host: str, port: int, backlog: int = 128) -> socket.socket:
    s = socket_in(ns)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        raise KernelError(f"cannot listen on {host}:{port} in {ns}: {e.strerror}") from None
    s.listen(backlog)
    return s


def kill_group(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 9)


def is_enoent(e: OSError) -> bool:
    return e.errno == errno.ENOENT
