"""Serving the HTTP app with uvicorn on a socket bound beforehand.

The supervisor binds the port itself and hands the listening socket to its HTTP child, as
gunicorn does: a bad port fails the supervisor's start with a clear message, and a restarted
child takes over the same socket without an "address in use" window.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from typing import Any, Literal

from jobfleet import collector, processes
from jobfleet.log import get_logger
from jobfleet.settings import Settings

log = get_logger("jobfleet.http")

# The server this process runs, once made, for a stop asked before it could hear one.
_server: Any = None


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or ValueError saying why the port cannot be used."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ValueError(f"cannot listen on host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(
                f"port {port} on {host} is in use by another program: choose another port"
            ) from None
        if exc.errno == errno.EACCES:
            raise ValueError(
                f"no permission to listen on port {port}: use a port above 1023"
            ) from None
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def serve(sock: socket.socket, url: str, config: Settings, role: str) -> None:
    """Serve until SIGTERM or SIGINT (uvicorn finishes the requests in flight)."""
    stop_on_signal()  # the HTTP child's main did already, as early as it could
    import uvicorn

    from jobfleet.http.app import create_app

    app = create_app(url, config, role)  # type: ignore[arg-type]
    collector.settle()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop=event_loop(),
            timeout_graceful_shutdown=5,
            log_config=None,  # ours (structured) stays in charge
        )
    )
    host, port = sock.getsockname()[:2]
    global _server
    _server = server
    if stop_asked:  # during the start, before uvicorn listened for signals: serve nothing
        server.should_exit = True
    log.info(
        "http serving",
        extra={"role": role, "host": host, "port": port, "loop": server.config.loop},
    )
    server.run(sockets=[sock])
    log.info("http stopped", extra={"role": role, "host": host, "port": port})


stop_asked = False


def event_loop() -> Literal["uvloop", "asyncio"]:
    """uvloop where it is installed (a dependency wherever it has wheels), else asyncio's
    own: said in the "http serving" log line, so a figure can be told by its loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def stop_on_signal() -> None:
    """SIGTERM and SIGINT stop the server from now on: one that comes while the process
    still starts (importing the app takes a while) ends it as cleanly as one that comes
    while it serves, instead of killing it. uvicorn handles them itself while it serves, and
    raises them again to this handler once it has shut down."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)


def _stop(signum: int, frame: Any) -> None:
    global stop_asked
    stop_asked = True
    if _server is not None:
        _server.should_exit = True


def die_with_parent() -> None:
    """The supervisor's HTTP child dies with it, even when it is killed with SIGKILL."""
    processes.die_with_parent()
    if os.getppid() == 1:  # the parent went before we asked
        os._exit(0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for tests and the bench)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
