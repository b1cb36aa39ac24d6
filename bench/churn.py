"""The churn soak: the daemon repairing at grace 0 while podman churns (needs root).

    sudo .venv/bin/python bench/churn.py --podman 4.3 [--cycles 300] [--seed N]

The scenario is tests/e2e/churn.py (its docstring lists the operations and the
invariants checked after every cycle); tests/e2e/test_churn_e2e.py runs it short in
CI. Prints a summary table, writes bench/results/churn-podmanX.json, and exits 1 if
any invariant failed (a wrong release above all), naming the seed to run it again.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "e2e")]

from churn import ChurnSettings, run_churn  # noqa: E402
from oracle_tool import Oracle, build_oracle  # noqa: E402
from sandbox import FLAVOURS, Sandbox  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--podman", choices=FLAVOURS, default="4.3", help="sandbox flavour")
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--leak-every", type=int, default=10, help="cycles between plants")
    parser.add_argument(
        "--conmon-delay",
        type=float,
        default=0.5,
        help="seconds between a start's network setup and its conmon (0: podman's own)",
    )
    parser.add_argument("--out", default=None, help="JSON result (default bench/results/)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    out = Path(args.out or REPO / "bench" / "results" / f"churn-podman{args.podman}.json")
    print(
        f"churn: podman {args.podman}, {args.cycles} cycles, seed {seed}, conmon delay "
        f"{args.conmon_delay:g} s, code {_revision()}",
        flush=True,
    )
    settings = ChurnSettings(
        cycles=args.cycles, seed=seed, leak_every=args.leak_every, conmon_delay=args.conmon_delay
    )

    def log(line: str) -> None:
        if not args.quiet:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    with Sandbox(podman=args.podman) as sb:
        result = run_churn(sb, Oracle(build_oracle()), settings, log)
    print(result.summary())
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"revision": _revision(), "conmon_delay": args.conmon_delay, **result.to_json()}
    out.write_text(json.dumps(document, indent=2) + "\n")
    if not result.ok:
        print(
            f"FAILED: {len(result.failures)} invariant failures; reproduce with "
            f"sudo .venv/bin/python bench/churn.py --podman {args.podman} "
            f"--cycles {args.cycles} --seed {seed}",
            file=sys.stderr,
        )
        return 1
    return 0


def _revision() -> str:
    """The commit under test, "+changes" if the checkout differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
