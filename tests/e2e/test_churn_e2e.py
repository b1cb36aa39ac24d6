"""The churn of tests/e2e/churn.py, short: the daemon repairing at grace 0 while podman
changes all the time never releases a live allocation, and heals every real leak.

About 60 cycles per podman flavour (4.3 and 5.4), a minute or so each on 2 cores;
``bench/churn.py`` is the 300-cycle soak of the same scenario. Environment:
IPAMGUARD_CHURN_SEED (default below) and IPAMGUARD_CHURN_CYCLES reproduce or extend
a run; on failure the summary names the seed. The last two tests are what the churn
found, reduced to their smallest reproduction (both fixed in fdbed53).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from churn import Churn, ChurnSettings
from cli_helpers import as_json, ig, show
from oracle_tool import Oracle
from sandbox import IMAGE, IPAM_DB, Sandbox

from ipamguard import messages

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


def test_a_leak_seen_while_blind_heals_when_the_blind_spot_ends(
    sandbox: Sandbox, oracle: Oracle
) -> None:
    """The churn's drift, reduced: one planted leak, one blind spot, then silence.

    Found by the churn: a leak first seen while liveness was incomplete (a podman API
    service of another storage root, as in its remote operations) was not looked at
    again when the blind spot ended; its release waited for the next podman event or
    ipam.db change, or the resync (300 s by default).
    """
    churn = Churn(sandbox, oracle, ChurnSettings(cycles=0, conmon_delay=0))
    churn.setup()
    try:
        churn.start_alt_service()  # the daemon is blind while it runs: nothing released
        churn.op_plant("rm")
        (cid,) = churn.planted
        found = sandbox.wait_journal(
            timeout=20, MESSAGE_ID=messages.LEAK_FOUND, IPAMGUARD_CONTAINER_ID=cid
        )
        assert found, "the daemon never reported the leak"
        assert found[0]["IPAMGUARD_RELEASABLE"] in ("False", "false")
        time.sleep(2)
        assert not sandbox.journal_entries(MESSAGE_ID=messages.LEAK_RELEASED)
        churn.stop_alt_service()  # the blind spot ends; nothing else happens
        released = sandbox.wait_journal(
            timeout=20, MESSAGE_ID=messages.LEAK_RELEASED, IPAMGUARD_CONTAINER_ID=cid
        )
        assert released, "still not released 20 s after the blind spot ended"
    finally:
        churn.teardown()


def test_restore_gives_no_running_container_an_address_it_does_not_use(
    sandbox: Sandbox, oracle: Oracle
) -> None:
    """Seen in the 300-cycle soak on podman 5.4 (seed 300054, cycle 23: a restore of a
    full copy while ``podman network disconnect`` ran), reduced: no race is needed.

    The restore put back an allocation of a running container that no longer used it
    (only what a restore removes was judged against liveness, not what it adds): the
    address was refused to every other container while `ipamguard check` reported
    nothing, until that container stopped. Now: refused, or reported.
    """
    for name, subnet in (("ipg-a", "172.19.40.0/24"), ("ipg-b", "172.19.41.0/24")):
        sandbox.network_create(name, subnet)
    sandbox.start_podman_service()
    cid = sandbox.podman(
        "run", "-d", "--name", "x", "--network", "ipg-a", "--network", "ipg-b",
        IMAGE, "sleep", "1000",
    ).stdout.strip()  # fmt: skip
    sandbox.run("cp", IPAM_DB, "/var/tmp/before.db")  # the backup: x on both networks
    (ip,) = [ip for (net, ip), holder in _held(oracle, sandbox).items() if net == "ipg-b"]
    sandbox.podman("network", "disconnect", "ipg-b", "x")  # podman frees ip
    restored = ig(sandbox, "restore", "/var/tmp/before.db", "--yes", "--json",
                  "--backup-dir", "/var/tmp/restore-backups")  # fmt: skip
    if restored.returncode != 0:  # refused: nothing put back
        assert ("ipg-b", ip) not in _held(oracle, sandbox), show(restored)
        return
    assert _held(oracle, sandbox).get(("ipg-b", ip)) == cid  # put back for x...
    uses = sandbox.podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", "x")
    assert "ipg-b" not in json.loads(uses.stdout)  # ...which does not use it
    twin = sandbox.podman("run", "-d", "--network", f"ipg-b:ip={ip}", IMAGE, "sleep", "1000",
                          check=False)  # fmt: skip
    assert f"already allocated to container ID {cid}" in twin.stderr, show(twin)
    findings = as_json(ig(sandbox, "check", "--json"))["findings"]
    assert any(f.get("ip") == ip for f in findings), (
        f"{ip} is held for running x, which does not use it, refused to others, and "
        f"`ipamguard check` reports nothing: {findings}"
    )


def _held(oracle: Oracle, sb: Sandbox) -> dict[tuple[str, str], str]:
    return oracle.ipam_held(sb.host_path(IPAM_DB))
