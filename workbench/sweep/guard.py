"""One sweep at a time per sweep folder, and Ctrl-C that stops a sweep cleanly.

Two runs of one sweep would measure every point twice, under contention, and one run's clean-up
could delete the other's point in progress. `hold(root)` takes `root/.lock` with `filelock`: the
operating system releases it when its holder dies, so a lock left by a killed run is taken over
(with a note); a live holder makes the second run refuse with one line naming its PID.

Ctrl-C: the first SIGINT stops queuing points and lets the running one finish (kernels run in their
own session, so a terminal's Ctrl-C does not reach them); the second kills the running points'
kernels and stops at once. Either way the sweep prints its summary and exits 130; running the same
command again resumes with exactly the unfinished points.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from workbench.errors import SweepError
from workbench.paths import atomic_write_text

LOCK = ".lock"
OWNER = ".lock.pid"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def hold(root: Path):
    """Hold the sweep folder's lock for the block; `SweepError` naming the holder's PID if another run has it."""
    import psutil
    from filelock import FileLock, Timeout

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock, owner = FileLock(root / LOCK), root / OWNER
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _read_pid(owner)
        raise SweepError(
            f"{root}: another run of this sweep holds the lock (pid {holder or 'unknown'}); wait for it or stop it"
        ) from None
    try:
        previous = _read_pid(owner)
        if previous is not None and previous != os.getpid() and not psutil.pid_exists(previous):
            print(f"note: took over the lock of pid {previous}, which is no longer running", file=sys.stderr)
        atomic_write_text(owner, f"{os.getpid()}\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def kill_kernels() -> None:
    """Kill this process's children with their process groups (a kernel leads its own session)."""
    import psutil

    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(child.pid) == child.pid:
                os.killpg(child.pid, signal.SIGKILL)
            else:
                child.kill()


class Interrupts:
    """SIGINT while a sweep runs: `stopping` after the first (no new point starts), `aborted` after the second
    (running kernels are killed). Outside the main thread signals cannot be caught and nothing changes."""

    def __init__(self):
        self.count = 0
        self._previous = None

    @property
    def stopping(self) -> bool:
        return self.count >= 1

    @property
    def aborted(self) -> bool:
        return self.count >= 2

    def _handle(self, signum, frame):
        self.count += 1
        if self.count == 1:
            print("\nstopping: the running point finishes, no new one starts (Ctrl-C again: stop now)", file=sys.stderr)
        else:
            print("\nstopping now: killing the running point's kernel", file=sys.stderr)
            kill_kernels()

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
