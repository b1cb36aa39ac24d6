"""The churn of tests/e2e/churn.py, short: the daemon repairing at grace 0 while podman
changes all the time never releases a live allocation, and heals every real leak.

About 60 cycles per podman flavour (4.3 and 5.4), a minute or so each on 2 cores;
``bench/churn.py`` is the 300-cycle soak of the same scenario. Environment:
IPAMGUARD_CHURN_SEED (default below) and IPAMGUARD_CHURN_CYCLES reproduce or extend
a run; on failure the summary names the seed.
"""

from __future__ import annotations

import os

import pytest
from churn import Churn, ChurnSettings
from oracle_tool import Oracle
from sandbox import Sandbox

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("IPAMGUARD_CHURN_SEED", "20261128"))
CYCLES = int(os.environ.get("IPAMGUARD_CHURN_CYCLES", "60"))


def test_churn_never_releases_a_live_allocation(sandbox: Sandbox, oracle: Oracle) -> None:
    churn = Churn(
        sandbox,
        oracle,
        ChurnSettings(cycles=CYCLES, seed=SEED, rss_cycle=max(CYCLES // 2, 1), settle_seconds=20),
    )
    result = churn.run()
    print(result.summary())
    assert result.wrong_releases == [], result.summary()
    assert result.ok, result.summary()
    assert result.cycles == CYCLES, result.summary()
    # leaks were planted every 10 cycles and all of them healed (or a restore took them)
    assert result.planted >= CYCLES // 10 - 1, result.summary()
    assert result.healed + result.vanished == result.planted, result.summary()
    assert result.leaks_left == {}, result.summary()
    assert result.daemon_exit == 0, result.summary()
    # and the checks would have seen a wrong release
    assert churn.self_test() == []
