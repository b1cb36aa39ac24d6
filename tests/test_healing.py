"""repair() on a Go-written ipam.db: released only when the second look agrees.

The liveness sources here are data (lists of containers, or a failure) standing in
for podman's API and /proc; the real sources are tested against a real podman in
tests/liveness and tests/e2e.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from oracle_tool import Oracle, container_id

from ipamguard.errors import SourceUnavailable
from ipamguard.healing import Settings, judge, observe, repair
from ipamguard.ipam.paths import ROOTFUL, PodmanPaths
from ipamguard.liveness import ContainerInfo

pytestmark = pytest.mark.oracle


@dataclass
class Scripted:
    """A liveness source answering from a script: one answer per call."""

    answers: list[list[ContainerInfo] | str]
    name: str = "scripted"
    calls: int = field(default=0)

    def observe(self) -> list[ContainerInfo]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, str):
            raise SourceUnavailable(answer)
        return answer


def settings(tmp_path: Path, db: Path) -> Settings:
    paths = PodmanPaths(
        db=str(db),
        network_dir=str(tmp_path / "networks"),
        network_locks=(),
        socket_url=ROOTFUL.socket_url,
        runtime_dirs=(),
        backup_dir=str(tmp_path / "backups"),
    )
    (tmp_path / "networks").mkdir(exist_ok=True)
    (tmp_path / "networks" / "n.json").write_text('{"name": "podman1"}')
    return Settings(paths, lock_timeout=1.0, backups_keep=5)


def running(index: int) -> ContainerInfo:
    return ContainerInfo(container_id(index), "running", "scripted")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_release_when_both_looks_agree(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, "podman1", "10.89.0.0/24", 4)
    alive = [running(0), running(1), running(3)]  # container 2 is gone
    source = Scripted([alive])
    s = settings(tmp_path, db)
    findings = judge(observe(s, [source]), {}, grace=0).findings
    assert [(f.kind, f.container_id) for f in findings] == [("leaked", container_id(2))]
    result = repair(s, findings, {"leaked"}, [source], [])
    assert [f.container_id for f in result.released] == [container_id(2)]
    assert oracle.check(db) == []
    assert result.backup is not None
    assert os.stat(result.backup).st_mode & 0o777 == 0o600
    assert judge(observe(s, [source]), {}, grace=0).findings == []


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        ("podman API at unix:///x: connection refused", "liveness incomplete"),
        ([running(2)], "the container runs now"),
        ([ContainerInfo(container_id(2), "exited", "scripted")], "the container exists now"),
    ],
)
def test_nothing_written_when_the_second_look_disagrees(
    oracle: Oracle, tmp_path: Path, second: list[ContainerInfo] | str, reason: str
) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, "podman1", "10.89.0.0/24", 3)
    source = Scripted([[running(0), running(1)], second])
    s = settings(tmp_path, db)
    findings = judge(observe(s, [source]), {}, grace=0).findings
    digest = sha(db)
    result = repair(s, findings, {"leaked"}, [source], [])
    assert result.released == []
    assert [why for _, why in result.refused] and reason in result.refused[0][1]
    assert sha(db) == digest
    assert not (tmp_path / "backups").exists()


def test_unconfirmed_findings_wait_for_the_grace_period(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, "podman1", "10.89.0.0/24", 2)
    source = Scripted([[running(0)]])
    s = settings(tmp_path, db)
    findings = judge(observe(s, [source]), {}, grace=60).findings
    digest = sha(db)
    result = repair(s, findings, {"leaked"}, [source], [])
    assert result.released == [] and "grace" in result.refused[0][1]
    assert sha(db) == digest
