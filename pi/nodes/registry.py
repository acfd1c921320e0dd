"""The registry of approved nodes and the jobs added from the CLI: tinydb under private/.

Small and rarely written (an approval, a rename, a job added), with one writer: the node
daemon. The CLI asks the daemon (over its loopback admin endpoints) instead of opening the
file, since tinydb has no locking and rewrites the whole file on each write. Pending nodes
are not stored at all: they say hello again every few seconds, and a flood of made-up
hardware ids must not write to the SD card.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
from tinydb import Query, TinyDB

from pi.nodes.config import JobConfig, decode_job

FILE = "nodes-registry.json"


class Node(msgspec.Struct, kw_only=True):
    hwid: str
    name: str
    role: str | None = None
    key: str  # hex; the node signs every request with it
    wrapped: str  # the key wrapped with the pairing code, handed out by hello
    proof: str
    firmware: str = ""
    capabilities: list[str] = []
    limits: dict[str, dict[str, Any]] = {}
    approved_at: float = 0.0


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self.db = TinyDB(path, indent=None)
        if fresh:
            os.chmod(path, 0o600)  # node keys
        self.nodes_table = self.db.table("nodes")
        self.jobs_table = self.db.table("jobs")
        self._nodes = {d["hwid"]: msgspec.convert(d, Node) for d in self.nodes_table.all()}

    def close(self) -> None:
        self.db.close()

    def nodes(self) -> list[Node]:
        return sorted(self._nodes.values(), key=lambda n: n.name)

    def get(self, hwid: str) -> Node | None:
        return self._nodes.get(hwid)

    def by_name(self, name: str) -> Node | None:
        return next((n for n in self._nodes.values() if n.name == name), None)

    def find(self, ref: str) -> Node | None:
        """A node by hardware id or name."""
        return self.get(ref) or self.by_name(ref)

    def save(self, node: Node) -> None:
        self.nodes_table.upsert(msgspec.to_builtins(node), Query().hwid == node.hwid)
        self._nodes[node.hwid] = node

    def remove(self, hwid: str) -> None:
        self.nodes_table.remove(Query().hwid == hwid)
        self._nodes.pop(hwid, None)

    def jobs(self) -> list[JobConfig]:
        return [decode_job({k: v for k, v in d["job"].items() if v is not None})
                for d in self.jobs_table.all()]

    def since(self, job_id: str) -> float | None:
        found = self.jobs_table.search(Query().job.id == job_id)
        return float(found[0]["since"]) if found else None

    def add_job(self, job: JobConfig, now: float) -> None:
        stored = {k: v for k, v in msgspec.to_builtins(job).items() if v is not None}
        self.jobs_table.insert({"job": stored, "since": now})

    def remove_job(self, job_id: str) -> bool:
        return bool(self.jobs_table.remove(Query().job.id == job_id))
