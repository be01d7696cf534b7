"""Run every benchmark script in this folder, one after the other.

    python benchmarks/run_all.py [name-filter]

Each script prints its own figures; this only runs them in turn (in separate
processes, so one's memory and threads do not affect the next) and stops at
the first failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    pattern = sys.argv[1] if len(sys.argv) > 1 else ""
    scripts = sorted(p for p in HERE.glob("bench_*.py") if pattern in p.name)
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        code = subprocess.call([sys.executable, str(script)])
        if code:
            print(f"{script.name} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
