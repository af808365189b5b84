"""This node's identity and its rows in the database: the node registry and handler defaults."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobfleet.queries import sql
from jobfleet.worker.registry import HandlerSpec


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Node:
    name: str
    handlers: Mapping[str, HandlerSpec]
    queues: Sequence[str] | None
    workers: int

    @property
    def types(self) -> list[str]:
        return sorted(self.handlers)

    def register(self, conn: Any) -> None:
        """Publish the handlers' per-type defaults and this node's first heartbeat."""
        with conn.transaction():
            for spec in self.handlers.values():
                conn.execute(sql("upsert_job_type"), spec.defaults_row())
        self.heartbeat(conn, busy=0)

    def heartbeat(self, conn: Any, busy: int) -> None:
        conn.execute(
            sql("upsert_node"),
            {
                "name": self.name,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "workers": self.workers,
                "busy": busy,
                "queues": None if self.queues is None else list(self.queues),
                "types": self.types,
            },
        )

    def unregister(self, conn: Any) -> None:
        conn.execute(sql("delete_node"), {"name": self.name, "pid": os.getpid()})

    def remaining(self, conn: Any) -> int:
        row = conn.execute(
            sql("burst_remaining"),
            {"types": self.types, "queues": None if self.queues is None else list(self.queues)},
        ).fetchone()
        return int(row[0]) if row else 0
