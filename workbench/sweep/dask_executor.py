"""The client side of a sweep on a Dask cluster: connect, check the workers, feed them points, take the files back.

Before anything is written the scheduler must answer (else one line, exit 2), have workers, offer the `timed`
resource (one timed point per machine; `--share-machines` lifts it) and every worker must hold the model folders
the points name. Points are submitted one per free timed slot, so Ctrl-C stops queuing as locally. A worker that
dies mid-point (or after finishing, before its files arrive) loses its result; the scheduler runs the point again
elsewhere and the client, which writes each point once, records the lost worker. Each point's start and end on
its worker give what actually overlapped on one machine, recorded in point.yaml (`workers`, `overlapped_with`).
`--rerun` works as locally: a finished point's earlier results move to `<point>/.replaced/` before it is submitted.

    workbench sweep params/smoke.yaml --scheduler tcp://HOST:8786 [--share-machines]
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.errors import SweepError
from workbench.results.store import is_finished
from workbench.sweep import cluster
from workbench.sweep.execute import NOTEBOOK, NotebookPolicy
from workbench.sweep.guard import Interrupts
from workbench.sweep.outcome import PointOutcome, PointStatus
from workbench.sweep.rerun import set_aside
from workbench.sweep.spec import Point, Sweep

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

    from workbench.sweep.cluster import PointFiles

CONNECT_TIMEOUT_S = 10
POLL_S = 1.0


@dataclass
class Session:
    """A connected client, what it knows about the workers, and what it has seen happen to them."""

    client: Client
    share_machines: bool = False
    local: LocalCluster | None = None  # the LocalCluster this session started, if any
    names: dict[str, str] = field(default_factory=dict)  # address -> worker name
    lost: list[str] = field(default_factory=list)
    running_on: dict[str, str] = field(default_factory=dict)  # task key -> worker name, as last seen

    def workers(self) -> dict:
        """Address -> worker info, asked of the scheduler now. Not `client.scheduler_info()`: it returns a cached
        identity that the client's periodic refresh may just have replaced with one listing no workers."""
        return self.client.sync(self.client.scheduler.identity, n_workers=-1).get("workers", {})

    def slots(self) -> int:
        """Points that may run at once: workers offering `timed` (or every thread when machines are shared)."""
        workers = self.workers().values()
        if self.share_machines:
            return sum(int(w.get("nthreads", 1)) for w in workers)
        return sum(int(w.get("resources", {}).get(cluster.TIMED, 0)) for w in workers)

    def poll(self, keys: set[str]) -> list[str]:
        """Refresh the workers; return a line for each worker that left while it held one of `keys`."""
        current = {addr: str(w.get("name", addr)) for addr, w in self.workers().items()}
        lines = []
        for addr, name in self.names.items():
            if addr not in current and name not in self.lost:
                self.lost.append(name)
                held = sorted(k for k, worker in self.running_on.items() if worker == name and k in keys)
                ids = ", ".join(k.split("-")[-2] for k in held)
                what = f" while it ran {ids}; it runs again elsewhere" if held else ""
                lines.append(f"lost worker {name} ({addr}){what}")
        self.names.update(current)
        for addr, tasks in self.client.processing().items():
            for key in tasks:
                self.running_on[str(key)] = current.get(addr, addr)
        return lines


@contextlib.contextmanager
def open_session(sweep: Sweep, *, scheduler: str | None, workers: int, share_machines: bool = False):
    """Connect (or start a `LocalCluster` of `workers` processes, each offering `timed=1`) and check the workers
    can run `sweep`; raises `SweepError` in one line before anything is written."""
    from distributed import Client, LocalCluster

    local = None
    if scheduler is None:
        local = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources={cluster.TIMED: 1},
        )
    try:
        client = Client(local or scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SweepError(f"--scheduler {scheduler}: no Dask scheduler answered ({reason[:160]})") from None
    session = Session(client, share_machines, local)
    try:
        check_cluster(session, sweep, scheduler or "the local cluster")
        yield session
    finally:
        client.close()
        if local is not None:
            local.close()


def check_cluster(session: Session, sweep: Sweep, address: str) -> None:
    """Workers exist, offer `timed` (unless shared), and each holds every model folder the points name."""
    workers = session.workers()
    if not workers:
        raise SweepError(f"{address}: the scheduler has no workers; start `dask worker {address} --resources timed=1`")
    session.names = {addr: str(w.get("name", addr)) for addr, w in workers.items()}
    if not session.share_machines and session.slots() == 0:
        raise SweepError(
            f"{address}: no worker offers the '{cluster.TIMED}' resource; start each measuring machine's worker with "
            f"`dask worker {address} --nworkers 1 --resources {cluster.TIMED}=1`, or pass --share-machines"
        )
    found = session.client.run(cluster.check_worker, model_dirs(sweep))
    problems = [f"{problem} on worker {session.names.get(a, a)}" for a, ps in sorted(found.items()) for problem in ps]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise SweepError(f"{address}: {'; '.join(problems[:3])}{more}")


def model_dirs(sweep: Sweep) -> list[str]:
    """The local model folders the sweep's points name (presets build themselves; hub ids download)."""
    from pathlib import Path

    from workbench import experiments
    from workbench.models import build
    from workbench.optimise import derived

    found = set()
    for point in sweep.points:
        config = experiments.build_config(sweep.experiment, None, point.params)
        for spec in config.model_specs():
            if spec not in build.PRESETS and not derived.is_derived(spec) and Path(spec).expanduser().is_dir():
                found.add(str(Path(spec).expanduser().resolve()))
    return sorted(found)


@dataclass
class Progress:
    """Where the loop reports: the tqdm bar (or nothing), one line per event on stderr."""

    bar: object
    record: Callable[[PointOutcome], None]

    def say(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr) if hasattr(self.bar, "write") else print(line, file=sys.stderr)


def run_points(
    sweep: Sweep,
    todo: list[Point],
    session: Session,
    *,
    progress: Progress,
    policy: NotebookPolicy,
    rerun: frozenset[str] = frozenset(),
) -> None:
    """Feed `todo` to the cluster, one point per free slot, with `policy`'s timeout and retries, until done, Ctrl-C
    (`policy.interrupts`) or abort. A finished point that `rerun` names has its earlier results set aside
    (`set_aside`) as it is submitted."""
    notebook = NOTEBOOK.read_text()
    interrupts = policy.interrupts or Interrupts()
    pending = deque(todo)
    running: dict[Future[PointFiles], Point] = {}
    timings: dict[str, tuple] = {}
    resources = None if session.share_machines else {cluster.TIMED: 1}
    waiting_said = False
    while pending or running:
        slots = session.slots()
        while pending and len(running) < max(slots, 1) and not interrupts.stopping:
            point = pending.popleft()
            if point.point_id in rerun and is_finished(sweep.root / point.point_id):
                set_aside(sweep.root / point.point_id)
            task = cluster.PointTask(
                sweep.name, sweep.experiment, point.point_id, point.params, notebook, policy.timeout_s, policy.retries
            )
            key = f"point-{sweep.name}-{point.point_id}-{uuid.uuid4().hex[:8]}"
            future = session.client.submit(cluster.run_point, task, key=key, pure=False, resources=resources)
            running[future] = point
        if interrupts.aborted:
            abort(session, running, progress)
            return
        if not running:
            break
        if slots == 0 and not waiting_said:
            progress.say(f"waiting: no worker offers '{cluster.TIMED}' now (start one, or Ctrl-C)")
        waiting_said = slots == 0
        done = wait_some(list(running))
        for line in session.poll({str(f.key) for f in running}):
            progress.say(line)
        for future in done:
            point = running.pop(future)
            progress.record(receive(sweep, point, future, session, timings=timings, progress=progress))
    for point in pending:
        progress.record(PointOutcome(point.point_id, PointStatus.REMAINING))


def wait_some(futures: list) -> set:
    """The futures that finished within `POLL_S` (maybe none)."""
    from distributed import wait

    try:
        return set(wait(futures, timeout=POLL_S, return_when="FIRST_COMPLETED").done)
    except TimeoutError:
        return set()


def abort(session: Session, running: dict, progress: Progress) -> None:
    """Ctrl-C twice: kill the kernels of the workers running our points, cancel them, mark them interrupted."""
    from workbench.sweep.guard import kill_kernels

    held = {a for a, keys in session.client.processing().items() if {f.key for f in running} & set(map(str, keys))}
    if held:
        with contextlib.suppress(Exception):  # a worker that is gone has no kernels left to kill
            session.client.run(kill_kernels, workers=sorted(held))
    session.client.cancel(list(running))
    for point in running.values():
        progress.record(PointOutcome(point.point_id, PointStatus.INTERRUPTED))
    progress.say(f"stopped {len(running)} running points on {len(held)} workers")


def receive(sweep: Sweep, point: Point, future, session: Session, *, timings: dict, progress: Progress) -> PointOutcome:
    """One finished future: verify and write the point into the client's outputs, or record why it failed."""
    worker = session.running_on.get(future.key)
    if future.status == "error":
        exc = future.exception()
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        progress.say(f"failed {point.point_id} on {worker or 'an unknown worker'}: {reason}")
        meta: dict[str, Any] = {"sweep": sweep.name, "point_id": point.point_id, "experiment": sweep.experiment}
        meta |= {"params": point.params, "workers": 1, "worker": {"name": worker}}
        cluster.write_failure(sweep.root / point.point_id, meta, reason)
        return PointOutcome(point.point_id, PointStatus.FAILED, error=reason, on_cluster=True, worker=worker)
    fetch_start = time.perf_counter()
    result = future.result()  # the files travel now (the future is done)
    verify_start = time.perf_counter()
    worker = result.worker["name"]
    directory = sweep.root / point.point_id
    overlapped = overlaps(timings, result)
    meta = cluster.point_meta(sweep.name, sweep.experiment, point.params, result, overlapped=overlapped)
    error = result.error or cluster.verify(result)
    if result.status == PointStatus.DONE and error is None:
        write_start = time.perf_counter()
        cluster.write_point(directory, result, meta)
        for other in overlapped:
            cluster.add_overlap(sweep.root / other, point.point_id)
        cost = {
            "fetch_s": verify_start - fetch_start,
            "verify_s": write_start - verify_start,
            "write_s": time.perf_counter() - write_start,
            "bytes": sum(len(data) for data in result.files.values()),
        }
        seconds = result.ended_s - result.started_s
        progress.say(f"done {point.point_id} on {worker} in {seconds:.1f} s")
        seconds = round(seconds, 2)
        return PointOutcome(
            point.point_id, PointStatus.DONE, on_cluster=True, worker=worker, seconds=seconds, client_cost=cost
        )
    if result.status == PointStatus.DONE:
        error = f"the files from worker {worker} fail verification: {error}"
    elif error is None:  # a worker marks a point FAILED only with its error (`cluster.run_point`)
        error = f"worker {worker} marked the point failed without saying why"
    cluster.write_failure(directory, meta, error, executed=result.files.get("executed.ipynb"))
    progress.say(f"failed {point.point_id} on {worker}: {error}")
    notebook = str(directory / "executed.ipynb") if "executed.ipynb" in result.files else None
    failed = PointStatus.FAILED
    return PointOutcome(point.point_id, failed, error=error, executed_notebook=notebook, on_cluster=True, worker=worker)


def overlaps(timings: dict, result: cluster.PointFiles) -> list[str]:
    """Points seen so far that ran on the same machine (host hash) while `result`'s did; records `result`."""
    host = result.machine.get("host_hash") or result.worker.get("address")
    timings[result.point_id] = (host, result.started_s, result.ended_s)
    return [
        pid
        for pid, (other_host, start, end) in timings.items()
        if pid != result.point_id and other_host == host and start < result.ended_s and result.started_s < end
    ]


def worker_summary(outcomes: list[PointOutcome], session: Session) -> dict:
    """Points done and failed per worker, and the workers lost during the sweep."""
    done = Counter(o.worker for o in outcomes if o.status is PointStatus.DONE)
    failed = Counter(o.worker for o in outcomes if o.status is PointStatus.FAILED)
    names = sorted(name for name in {*done, *failed} if name is not None)
    costs = [o.client_cost for o in outcomes if o.client_cost is not None]
    total = {key: round(sum(c[key] for c in costs), 4) for key in ("fetch_s", "verify_s", "write_s", "bytes")}
    return {
        "per_worker": {name: {"done": done[name], "failed": failed[name]} for name in names},
        "lost_workers": list(session.lost),
        "client_cost": {**total, "points": len(costs)},  # what the client spent taking points back
    }
