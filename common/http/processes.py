"""`jobfleet api` with several processes: each serves the API on the one listening socket (the
kernel hands each new connection to one of them, as with gunicorn's workers), and this process
only watches them: a process that dies is started again (with the supervisor's backoff), and
SIGTERM or SIGINT stops them all, each finishing the requests in flight.

The children are the supervisor's HTTP children (supervisor/http_child.py), so an API host and
a node serve the same way; their metrics meet in one directory, so /metrics counts every
process's requests whichever process answers.
"""

from __future__ import annotations

import asyncio
import signal
import socket

from jobfleet import processes
from jobfleet.log import get_logger
from jobfleet.metrics import use_directory
from jobfleet.supervisor.http_child import HttpChild

log = get_logger("jobfleet.http")

# Restarts are checked at least this often while no signal comes.
WATCH_SECONDS = 0.5


def serve_processes(sock: socket.socket, url: str, count: int) -> None:
    """Serve the API from `count` processes until SIGTERM or SIGINT."""
    use_directory()
    asyncio.run(_watch([HttpChild("api", sock, url) for _ in range(count)]))


async def _watch(children: list[HttpChild]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    exited = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGCHLD, exited.set)
    for child in children:
        child.start()
    host, port = children[0].sock.getsockname()[:2]
    log.info("http serving", extra={"host": host, "port": port, "processes": len(children)})
    while not stop.is_set():
        _reap(children, restart=True)
        for child in children:
            child.restart_if_due()
        exited.clear()
        waits = [asyncio.ensure_future(e.wait()) for e in (stop, exited)]
        await asyncio.wait(waits, timeout=WATCH_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
    stopping = [asyncio.ensure_future(child.stop()) for child in children]
    while not all(task.done() for task in stopping):  # stop() waits for the reap to be seen
        _reap(children, restart=False)
        await asyncio.wait(stopping, timeout=0.05)
    for child in children:
        child.close()
    log.info("http stopped", extra={"host": host, "port": port})


def _reap(children: list[HttpChild], *, restart: bool) -> None:
    for pid, status in processes.exited_children():
        for child in children:
            if child.pid == pid:
                child.on_exit(status, restart=restart)
