"""`python -m bench` (make bench): run every benchmark in turn, each in its own process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

BENCHMARKS = ["pipeline", "retrieval", "trainer", "serving", "api_load"]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        if importlib.util.find_spec(f"bench.{name}") is None:
            print(f"== bench.{name}: not built yet, skipped", flush=True)
            continue
        print(f"== bench.{name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"== bench.{name}: exit {code} after {time.perf_counter() - started:.0f} s\n",
              flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
