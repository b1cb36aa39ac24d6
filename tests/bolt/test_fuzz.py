"""Byte flips in Go-written files, every run: the engine refuses cleanly or reads and writes
what Go reads and accepts (the rules: fuzzing.py; more cases: bench/fuzz_bolt.py).

Three fixed seeds and one new random seed per run (its number is in the test id and in
the failure message: ``python3 bench/fuzz_bolt.py --seed N --first I --cases 1`` runs
that case again, with the same bytes).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import fuzzing
import pytest
from fuzz_targets import GROUPS, Base, build_bases
from oracle_tool import Oracle, require_engine

pytestmark = pytest.mark.oracle

CASES = int(os.environ.get("IPAMGUARD_FUZZ_CASES", "200"))  # per seed
RANDOM_SEED = random.SystemRandom().randrange(2**32)
SEEDS = [1, 2, 3, RANDOM_SEED]


@pytest.fixture(scope="module")
def bases(oracle: Oracle, tmp_path_factory: pytest.TempPathFactory) -> list[Base]:
    require_engine()
    return build_bases(oracle, tmp_path_factory.mktemp("fuzz-bases"))


@pytest.mark.parametrize(
    "seed", SEEDS, ids=[f"seed-{s}" for s in SEEDS[:-1]] + [f"random-seed-{RANDOM_SEED}"]
)
def test_byte_flips(oracle: Oracle, bases: list[Base], tmp_path: Path, seed: int) -> None:
    with fuzzing.tmp_dir() as work:  # tmpfs when there is one: every commit syncs twice
        summary = fuzzing.fuzz(oracle, work, seed, CASES, bases=bases, save=tmp_path)
    rerun = f"python3 bench/fuzz_bolt.py --seed {seed} --first I --cases 1"
    failures = [fuzzing.describe(i, r) for i, r in summary.failures]
    assert not failures, f"seed {seed} ({rerun}):\n" + "\n".join(failures)
    unexplained = [fuzzing.describe(i, r) for i, r in summary.unexplained()]
    assert not unexplained, (
        f"seed {seed}: the engine accepts files that Go's check rejects ({rerun}):\n"
        + "\n".join(unexplained)
    )
    # Not vacuous: every kind of page was hit, and both refusals and valid writes happened.
    hit = {group for group, _ in summary.counts}
    assert hit >= set(GROUPS) - {"multi"}, f"page types never mutated: {set(GROUPS) - hit}"
    outcomes = {outcome for _, outcome in summary.counts}
    assert {fuzzing.REFUSED, fuzzing.WRITTEN} <= outcomes, summary.table()
    assert summary.cases == CASES
