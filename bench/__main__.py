"""`python -m bench [names...]`: run benchmarks, then render docs/benchmarks.md.

Without names every benchmark runs; `python -m bench report` only renders the page from
bench/results.json. Each benchmark is a module of this package with `main() -> None` that
writes its own section of bench/results.json.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

from bench import report

ALL = ("edge_latency", "cpu", "ear", "flood", "capacity")


def run(name: str) -> bool:
    """Run one benchmark; False when it failed (a missing module is skipped, not failed)."""
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{name}":
            raise
        print(f"bench: no module bench/{name}.py yet, skipped", flush=True)
        return True
    print(f"bench: {name} …", flush=True)
    start = time.perf_counter()
    try:
        module.main()
    except Exception:
        traceback.print_exc()
        print(f"bench: {name} FAILED after {time.perf_counter() - start:.0f} s", flush=True)
        return False
    print(f"bench: {name} done in {time.perf_counter() - start:.0f} s", flush=True)
    return True


def main(argv: list[str]) -> int:
    names = [n for n in argv if n != "report"] if argv else list(ALL)
    failed = [name for name in names if not run(name)]
    path = report.main()
    print(f"bench: wrote {path}")
    if failed:
        print(f"bench: failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
