"""`yws serve` for the benchmarks: a free loopback port, started, waited for, stopped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def yws_serve(env: dict[str, str], timeout: float = 60,
              started: list[subprocess.Popen] | None = None) -> Iterator[str]:
    """Run `yws serve` with ``env`` (its YWS_HOME) and yield its base URL.

    ``started``, when given, receives the server's process (to read its memory, say).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yws = str(Path(sys.executable).with_name("yws"))
    server = subprocess.Popen([yws, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if started is not None:
        started.append(server)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("yws serve did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)
