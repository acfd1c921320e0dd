# The job runner: each execution has an id; one seen before is never run again.
import json
import os

DONE_FILE = "done.json"
# Ids remembered: far more than the executions a Pi re-delivers in its grace period.
KEEP = 24


class Job:
    def __init__(self, id_, capability, params):
        self.id, self.capability, self.params = id_, capability, params
        self.abort = None


class Runner:
    def __init__(self, caps, path=DONE_FILE, finished=None):
        self.caps = caps
        self.finished = finished  # an asyncio.Event set when a result waits to be reported
        self.path = path
        self.done = self._load()  # id → result record (or "started")
        self.order = sorted(self.done, key=lambda i: self.done[i].get("n", 0))
        self.running = {}
        self.unacked = [i for i in self.order if self.done[i].get("status") != "started"
                        and not self.done[i].get("acked")]
        self.n = max([self.done[i].get("n", 0) for i in self.order] or [0])

    def _load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.done, f)
        os.rename(tmp, self.path)

    def _record(self, id_, record):
        self.n += 1
        record["n"] = self.n
        if id_ not in self.done:
            self.order.append(id_)
        self.done[id_] = record
        while len(self.order) > KEEP:
            self.done.pop(self.order.pop(0), None)
        self._save()

    def accept(self, items, spawn):
        """Start what is new; a re-delivered id is only reported again."""
        for item in items:
            id_ = item.get("id")
            if not isinstance(id_, str) or id_ in self.running:
                continue
            seen = self.done.get(id_)
            if seen is not None:
                if seen.get("status") == "started":  # we rebooted mid-job: never again
                    self._finish(id_, "failed", {"error": "interrupted by a restart of the node"})
                elif id_ not in self.unacked:
                    self.unacked.append(id_)
                continue
            job = Job(id_, item.get("capability"), item.get("params") or {})
            self._record(id_, {"status": "started"})
            self.running[id_] = job
            spawn(self._run(job))

    async def _run(self, job):
        try:
            cap = self.caps.get(job.capability)
            result = await cap.run(job.params, job)
            self._finish(job.id, "done", result)
        except Exception as exc:  # a job's failure is its result, never the node's end
            self._finish(job.id, "failed", {"error": str(exc)})
        finally:
            self.running.pop(job.id, None)

    def _finish(self, id_, status, result):
        print("job", id_, status, result)
        self._record(id_, {"status": status, "result": result})
        if id_ not in self.unacked:
            self.unacked.append(id_)
        if self.finished is not None:
            self.finished.set()

    def abort_all(self, why):
        for job in self.running.values():
            job.abort = why

    def results(self):
        return [{"id": i, "status": self.done[i]["status"], "result": self.done[i].get("result")}
                for i in self.unacked if i in self.done]

    def acked(self, ids):
        changed = False
        for id_ in ids:
            if id_ in self.unacked:
                self.unacked.remove(id_)
            if id_ in self.done and not self.done[id_].get("acked"):
                self.done[id_]["acked"] = True
                changed = True
        if changed:
            self._save()
