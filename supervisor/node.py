"""This node's identity and its rows in the database: the node registry and handler defaults."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from jobfleet import type_limits
from jobfleet.errors import JobfleetError
from jobfleet.processes import alive
from jobfleet.queries import sql
from jobfleet.worker.registry import HandlerSpec


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Node:
    name: str
    handlers: Mapping[str, HandlerSpec]
    queues: Sequence[str] | None

    @property
    def types(self) -> list[str]:
        return sorted(self.handlers)

    def identity_params(self) -> dict[str, Any]:
        return {"name": self.name, "pid": os.getpid()}

    def heartbeat_params(self, *, workers: int, busy: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "workers": workers,
            "busy": busy,
            "queues": None if self.queues is None else list(self.queues),
            "types": self.types,
            "schedules": Jsonb(self.schedules),
        }

    @property
    def schedules(self) -> dict[str, dict[str, Any]]:
        """The periodic jobs this node's handlers declare, as its row in `nodes` holds them."""
        return {
            spec.type: {"schedule": spec.schedule, "payload": spec.cron_payload}
            for spec in self.handlers.values()
            if spec.schedule is not None
        }

    def register(self, conn: Any, *, workers: int, stale_after: float) -> None:
        """Claim the name, publish the handlers' per-type defaults and declared limits, and the
        first heartbeat.

        A name held by another live node is refused: two nodes renewing each other's leases
        would keep dead jobs alive forever.
        """
        # One round trip for the lot (two statements per type, about twenty in all, were
        # 7 ms one by one at every start); a name in use is refused after it, and the
        # transaction then undoes them. Each type's rows are locked in the types' name
        # order, the order every claimer of limited types and the limits' recount lock them
        # in (claims.py, pipeline_order; lock_type_limits): in the handlers' order, a node
        # starting beside running ones deadlocked with their claims and left at once
        # ("deadlock detected", seen once in a full test run, three nodes started together).
        with conn.transaction():
            with conn.pipeline():
                in_use = conn.execute(
                    sql("node_in_use"), {"name": self.name, "stale_after": stale_after}
                )
                published = []
                for spec in map(self.handlers.__getitem__, self.types):
                    conn.execute(sql("upsert_job_type"), spec.defaults_row())
                    cursor = conn.execute(sql("publish_type_limits"), spec.limits_row())
                    published.append((spec.type, cursor))
                conn.execute(sql("upsert_node"), self.heartbeat_params(workers=workers, busy=0))
            row = in_use.fetchone()
            if row is not None and not self._is_us_or_dead(row[0], row[1]):
                raise JobfleetError(
                    f"node name {self.name!r} is in use by pid {row[1]} on {row[0]} "
                    f"(heartbeat {row[2]:.0f} s ago): give this node another --node-name, or "
                    "stop that one"
                )
            for type, cursor in published:
                limits = cursor.fetchone()
                if limits is not None and limits[2]:  # another limit key: key again
                    type_limits.rekey(conn, type)

    @staticmethod
    def _is_us_or_dead(hostname: str, pid: int) -> bool:
        if hostname != socket.gethostname():
            return False
        if pid == os.getpid():
            return True
        return not alive(pid)  # dead: a previous run that died without saying goodbye
