"""Stops the embedded local Ray of a `scalelab run` when its driver ends, even by `kill -9`.

Ray's own processes notice a dead driver only after ~1 minute, and the trial runners go on
training meanwhile. `launch.ray_session.connect` starts this watcher next to the embedded Ray
with a pipe on its stdin: the pipe closes when the driver exits, however it exits. The watcher
then kills what is left of that Ray session (the processes that name its session folder, and
their descendants) and deletes the folder. `launch.ray_session.shutdown` uses it for a normal
end too: Ray's own teardown stops its processes one after another, a second or more.

    python -m scalelab.reaper /tmp/ray/session_2026-12-02_16-33-00_123456_4242 4242
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def session_pids(session: str, spare: int | None = None) -> list[int]:
    """The processes of this Ray session: those whose command line names its folder (raylet,
    GCS, monitors), those holding a file open in it (Linux; Ray's agents, which outlive a
    raylet killed with its driver), and all their descendants (workers, which Ray renames
    `ray::IDLE`, `ray::ImplicitFunc`, ...). Never this process, nor `spare` (the driver)."""
    name = Path(session).name
    out = subprocess.run(["ps", "-axo", "pid=,ppid=,args="], capture_output=True, text=True)
    children: dict[int, list[int]] = {}
    found = sorted(_holding(session))
    for line in out.stdout.splitlines():
        pid, ppid, *args = line.split(None, 2)
        if not (pid.isdigit() and ppid.isdigit()):
            continue
        children.setdefault(int(ppid), []).append(int(pid))
        if args and name in args[0] and "scalelab.reaper" not in args[0]:
            found.append(int(pid))
    seen: set[int] = set()
    while found:
        pid = found.pop()
        if pid not in seen and pid not in (os.getpid(), spare, 1):
            seen.add(pid)
            found.extend(children.get(pid, []))
    return sorted(seen)


def _holding(folder: str) -> set[int]:
    """Processes with a file open inside `folder`, from /proc (empty where there is none)."""
    inside = str(Path(folder).resolve()) + os.sep
    pids = set()
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if any(os.readlink(fd).startswith(inside) for fd in (d / "fd").iterdir()):
                pids.add(int(d.name))
        except (OSError, ValueError):
            continue  # gone, or not ours to read
    return pids


def reap(session: str, spare: int | None = None) -> int:
    """Kill the session's processes (twice: a dying raylet may start one more) and delete its
    folder. Returns how many processes were killed."""
    killed = 0
    for _ in range(2):
        pids = session_pids(session, spare)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        if not pids:
            break
        time.sleep(0.05)
    shutil.rmtree(session, ignore_errors=True)
    latest = Path(session).parent / "session_latest"
    if latest.is_symlink() and not latest.exists():
        latest.unlink(missing_ok=True)
    return killed


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    session, driver = sys.argv[1], int(sys.argv[2])
    sys.stdin.buffer.read()  # returns at EOF: the driver closed the pipe, or died
    reap(session, spare=driver)


if __name__ == "__main__":
    main()
