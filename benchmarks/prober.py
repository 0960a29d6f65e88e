"""A TCP prober for the lab's internet: starts a connection to each target every INTERVAL seconds
(independently of how long earlier attempts take), and on SIGTERM prints one JSON line:
``{target: [[start_time, ok], ...]}``.

    python benchmarks/prober.py 203.0.113.10:22,203.0.113.12:22 0.01
"""

from __future__ import annotations

import errno
import json
import selectors
import signal
import socket
import sys
import time

TIMEOUT_S = 0.25


def main() -> None:
    targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in sys.argv[1].split(",") if t]
    interval = float(sys.argv[2])
    results: dict[str, list[tuple[float, bool]]] = {f"{h}:{p}": [] for h, p in targets}
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[str, float]] = {}
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    next_at = time.monotonic()
    while not stop or pending:
        now = time.monotonic()
        if not stop and now >= next_at:
            for host, port in targets:
                s = socket.socket()
                s.setblocking(False)
                err = s.connect_ex((host, port))
                key = f"{host}:{port}"
                if err not in (0, errno.EINPROGRESS):
                    results[key].append((time.time(), False))
                    s.close()
                    continue
                pending[s] = (key, time.time())
                sel.register(s, selectors.EVENT_WRITE)
            next_at += interval
        timeout = max(0.0, min(next_at - time.monotonic(), 0.005))
        for k, _ in sel.select(timeout):
            s = k.fileobj
            key, t0 = pending.pop(s)  # type: ignore[arg-type]
            sel.unregister(s)
            ok = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0  # type: ignore[union-attr]
            results[key].append((t0, ok))
            s.close()  # type: ignore[union-attr]
        wall = time.time()
        for s, (key, t0) in list(pending.items()):
            if wall - t0 > TIMEOUT_S:
                pending.pop(s)
                sel.unregister(s)
                results[key].append((t0, False))
                s.close()
        if stop and not pending:
            break
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
