"""CPU of processes and of the machine from /proc (Linux only, stdlib only).

After the peers' baseline sampler (`common/procmon.py` of the peer-baseline scripts), so the
Majlis edge and the Icecast baseline are measured the same way: utime + stime of every
thread of every process of a group, children included, read at both ends of a window.
"""

from __future__ import annotations

import os

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0.0
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def with_children(pids: list[int]) -> list[int]:
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo += children(pid)
    return seen


def group_cpu_s(pids: list[int]) -> float:
    return sum(proc_cpu_s(p) for p in with_children(pids))


def machine_busy_s() -> tuple[float, list[float]]:
    """Busy CPU-seconds of the whole machine and of each core (all but idle and iowait)."""
    total = 0.0
    cores: list[float] = []
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            v = [int(x) / CLK for x in line.split()[1:9]]
            busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
            if line.startswith("cpu "):
                total = busy
            else:
                cores.append(busy)
    return total, cores


def ksoftirqd() -> list[int]:
    out: list[int] = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().startswith("ksoftirqd/"):
                        out.append(int(d))
            except OSError:
                pass
    return out


class Snapshot:
    """CPU of each group and of the machine at one instant."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        import time

        self.at = time.monotonic()
        self.groups = {name: group_cpu_s(pids) for name, pids in groups.items()}
        self.machine, self.cores = machine_busy_s()

    def cores_used(self, before: Snapshot) -> dict[str, float]:
        """Cores used by each group, the machine, each core, and the rest (other work)."""
        dt = self.at - before.at
        used = {k: (v - before.groups.get(k, 0.0)) / dt for k, v in self.groups.items()}
        machine = (self.machine - before.machine) / dt
        out = {k: round(v, 4) for k, v in used.items()}
        out["machine"] = round(machine, 3)
        for i, (a, b) in enumerate(zip(before.cores, self.cores, strict=False)):
            out[f"cpu{i}"] = round((b - a) / dt, 3)
        out["other"] = round(machine - sum(used.values()), 3)
        return out
