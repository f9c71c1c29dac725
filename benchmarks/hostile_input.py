"""Hostile-input fuzzing of ``trainyard.data.load``.

Runs the fixed list of known-bad inputs (``trainyard.data.fuzz_cases.write_hostile_cases``) plus
N random CSV byte soups and N random well-formed tables, and counts the outcomes. The contract:
every case loads into a valid Dataset or raises DataError; ``other_exception`` must be 0 (the
script exits 1 otherwise).

    python benchmarks/hostile_input.py                 # 2 x 500 random cases, seed 0
    python benchmarks/hostile_input.py --random 2000 --seed 3

Writes ``benchmarks/results/hostile_input.json``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULT = Path(__file__).resolve().parent / "results" / "hostile_input.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", type=int, default=500, help="random cases per generator (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)

    import numpy
    import pandas
    import PIL
    import pyarrow

    import trainyard
    from trainyard.data import load
    from trainyard.data.fuzz_cases import run_fuzz
    from trainyard.run import write_json

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trainyard-hostile-") as folder:
        counts = run_fuzz(load, folder, n_random=args.random, seed=args.seed)
    seconds = time.perf_counter() - start
    result = {
        "benchmark": "hostile_input",
        "source": "benchmarks/hostile_input.py",
        "command": " ".join(["python benchmarks/hostile_input.py", *(argv if argv is not None else sys.argv[1:])]),
        "seed": args.seed,
        "random_cases_per_generator": args.random,
        **counts,
        "wall_seconds": round(seconds, 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "gpu": None},
        "versions": {"trainyard": trainyard.__version__, "python": platform.python_version(),
                     "numpy": numpy.__version__, "pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
                     "pillow": PIL.__version__},
    }
    write_json(args.out, result)
    print(f"{counts['cases_tried']} cases: {counts['ok']} loaded, {counts['data_error']} DataError, "
          f"{counts['other_exception']} other exceptions; fixed cases as expected "
          f"{counts['fixed_cases_as_expected']}/{counts['fixed_cases']}; slowest {counts['max_seconds']} s -> {args.out}")
    for failure in counts["failures"]:
        print("  FAIL", failure)
    return 1 if counts["other_exception"] or counts["fixed_cases_as_expected"] != counts["fixed_cases"] else 0


if __name__ == "__main__":
    sys.exit(main())
