"""Fuzz the bbolt engine with byte flips in Go-written files, Go's bbolt as the judge.

    python3 bench/fuzz_bolt.py [--seed N] [--cases N] [--first I] [--save DIR] [-v]

Each case damages one Go-written base file (ipam.db as netavark writes it, a deep tree
of long keys in 1 KiB pages, a mix of overflow values and nested and inline buckets) in
one aimed way: a field, an element header, a key, a value, a bucket value or an inline
bucket, in a meta, freelist, branch, leaf, overflow or free page, or several at once.
The engine must refuse it (InvalidDatabase, one line, the file unchanged by a write
attempt) or read what Go reads and then write validly (a release, an allocation, a put,
a run of deletes; Go's check passes and Go's dump is the expected content). See
tests/bolt/fuzzing.py for the rules.

Prints a table per page type: refused, accepted+written-ok, accepted-but-Go-rejects
(findings: the engine accepts what Go's check rejects; listed by class), failures
(each with the seed and case number that reproduce it: ``--seed S --first I --cases 1``).
Exits 1 if any case failed, or if the engine accepted a file that Go rejects in a way not
known to be harmless. The base files are the same bytes on every run (each transaction of
theirs touches one bucket), so a seed reproduces its cases anywhere with the same bbolt
(Debian's 1.3.6): their digests are printed.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "bolt")]

import fuzzing  # noqa: E402
from fuzz_targets import build_bases  # noqa: E402
from oracle_tool import Oracle, build_oracle  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="default: a random one (printed)")
    parser.add_argument("--cases", type=int, default=3000, help="default: 3000")
    parser.add_argument("--first", type=int, default=0, help="first case number (default: 0)")
    parser.add_argument("--save", type=Path, help="keep each failing file here")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every finding")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    oracle = Oracle(build_oracle())
    with fuzzing.tmp_dir() as work:
        bases = build_bases(oracle, work)
        for base in bases:
            digest = hashlib.sha256(base.data).hexdigest()[:16]
            pages = len(base.data) // base.page_size
            print(f"base {base.name}: {pages} pages, sha256 {digest}")

        def progress(s: fuzzing.Summary) -> None:
            print(f"  {s.cases} cases, {len(s.failures)} failures, {s.seconds:.0f} s", flush=True)

        summary = fuzzing.fuzz(
            oracle, work, seed, args.cases, args.first, bases, args.save, progress
        )
    print(summary.table())
    classes = summary.finding_classes()
    if classes:
        print(f"\naccepted-but-Go-rejects, {len(summary.findings)} cases, by class:")
        for what, n in classes.most_common():
            print(f"  {n:5d}  {what}")
    if args.verbose:
        print("\naccepted-but-Go-rejects:")
        for index, result in summary.findings:
            print(fuzzing.describe(index, result))
        print("\nrefused, Go accepts:")
        for index, result in summary.stricter:
            print(fuzzing.describe(index, result))
    failed = False
    if summary.unexplained():
        failed = True
        print(f"\n{len(summary.unexplained())} accepted-but-Go-rejects of no known kind:")
        for index, result in summary.unexplained():
            print(fuzzing.describe(index, result))
    if summary.failures:
        failed = True
        print(f"\n{len(summary.failures)} FAILURES (reproduce: --seed {seed} --first I --cases 1)")
        for index, result in summary.failures:
            print(fuzzing.describe(index, result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
