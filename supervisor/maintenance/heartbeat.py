"""The node heartbeat: this node's row in `nodes` (workers, busy, types, queues) is refreshed,
so `jobfleet status` lists live nodes and the node-name guard knows this name is taken."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobfleet.queries import sql
from jobfleet.supervisor.node import Node


@dataclass
class Heartbeat:
    node: Node

    async def run_once(self, conn: Any, *, workers: int, busy: int) -> None:
        await conn.execute(
            sql("upsert_node"), self.node.heartbeat_params(workers=workers, busy=busy)
        )
