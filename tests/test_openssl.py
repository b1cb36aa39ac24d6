"""ipamguard.openssl: the daemon runs without OpenSSL mapped (``ipamguard daemon``).

It never speaks TLS and hashes only a backup's SHA-256, which CPython computes by
itself where it has its own SHA-256 (Debian's, not Fedora's): libssl and libcrypto
stay out of its address space (~5 MB of its resident set). Real processes: the
daemon as systemd starts it, a release in a process that shed OpenSSL (its backup
record's checksum against OpenSSL's, the file against Go's check).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from oracle_tool import Oracle, container_id

from ipamguard import backups

REPO = Path(__file__).resolve().parents[1]
ENV = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def openssl_maps(pid: int) -> set[str]:
    """The OpenSSL libraries mapped into process ``pid``."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in ("libssl", "libcrypto") if name in maps}


def run_daemon(tmp_path: Path, extra: str = "") -> tuple[set[str], bool]:
    """The daemon as systemd starts it, until READY=1 and a reconcile's status file:
    (the OpenSSL libraries it maps then, whether it wrote a metrics textfile)."""
    config = tmp_path / "ipamguard.toml"
    config.write_text(
        f'[paths]\ndb = "{tmp_path}/networks/ipam.db"\n'
        f'[podman]\nurl = "unix://{tmp_path}/no-podman.sock"\n{extra}'
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipamguard", "daemon", "--config", str(config)],
        env={**ENV, "NOTIFY_SOCKET": str(tmp_path / "notify"),
             "RUNTIME_DIRECTORY": str(tmp_path / "run"),
             "STATE_DIRECTORY": str(tmp_path / "state")},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        while "READY=1" not in notify.recv(4096).decode():
            pass
        maps = openssl_maps(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        notify.close()
    assert proc.returncode == 0, stderr
    return maps, (tmp_path / "metrics.prom").exists()


def test_the_daemon_process_maps_no_openssl(tmp_path: Path) -> None:
    assert run_daemon(tmp_path) == (set(), False)


def test_a_daemon_that_writes_metrics_maps_no_openssl_either(tmp_path: Path) -> None:
    """prometheus_client would import ssl: the metrics are written without it."""
    textfile = f'[metrics]\ntextfile = "{tmp_path}/metrics.prom"\n'
    assert run_daemon(tmp_path, textfile) == (set(), True)


@pytest.mark.oracle
def test_a_release_without_openssl_records_openssls_checksum(
    oracle: Oracle, tmp_path: Path
) -> None:
    db, backup_dir = tmp_path / "ipam.db", tmp_path / "backups"
    oracle.ipam_gen(db, "podman1", "10.89.0.0/24", 20)
    before = db.read_bytes()
    victim = container_id(7)
    done = python(
        "import sys, json\n"
        "from ipamguard.cli import main\nfrom ipamguard.openssl import shed\n"
        "shed = shed()\n"
        f"code = main(['release', '--container', {victim!r}, '--force', '--yes', '--json',"
        f" '--db', {str(db)!r}, '--backup-dir', {str(backup_dir)!r}])\n"
        "print(json.dumps({'shed': shed, 'code': code,"
        " 'loaded': [m for m in ('ssl', '_ssl', '_hashlib') if sys.modules.get(m)],"
        " 'maps': [n for n in ('libssl', 'libcrypto') if n in open('/proc/self/maps').read()]}))"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"shed": ["ssl", "_ssl", "_hashlib"], "code": 0, "loaded": [], "maps": []}
    kept = {b.kind: b.path for b in backups.list_backups(str(backup_dir))}
    record = backups.read_record(kept["record"])
    assert record["before"]["sha256"] == hashlib.sha256(before).hexdigest()  # OpenSSL's here
    assert Path(kept["copy"]).read_bytes() == before
    assert oracle.check(db) == []
    assert victim not in json.dumps(oracle.ipam_dump(db))


def test_without_its_own_sha256_python_keeps_openssls_hashlib() -> None:
    """Fedora's Python has no built-in SHA-256: only ssl is shed, hashlib still works."""
    done = python(
        "import sys\n"
        "sys.modules['_sha2'] = sys.modules['_sha256'] = None\n"
        "from ipamguard.openssl import shed\n"
        "print(shed())\n"
        "import hashlib\n"
        "print(hashlib.sha256(b'abc').hexdigest()[:8])\n"
        "try:\n    import ssl\nexcept ImportError:\n    print('no ssl')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["['ssl', '_ssl']", "ba7816bf", "no ssl"]


def test_modules_already_loaded_and_other_commands_are_left_alone() -> None:
    done = python(
        "import sys, ssl\n"
        "from ipamguard.openssl import shed\n"
        "print(shed(), sys.modules['ssl'] is ssl)\n"
        "sys.argv = ['ipamguard', 'dump', '--help']\n"
        "from ipamguard.cli import entry\n"
        "del sys.modules['ssl']\n"
        "try:\n    entry()\nexcept SystemExit:\n    pass\n"
        "print('ssl' in sys.modules)\n"
    )
    assert done.returncode == 0, done.stderr
    first, *_, last = done.stdout.splitlines()
    assert first == "['_hashlib'] True"  # ssl and _ssl were loaded already: kept
    assert last == "False"  # ``dump`` shed nothing (a shed module would be None in there)


def test_metrics_are_written_without_openssl(tmp_path: Path) -> None:
    done = python(
        "import sys\n"
        "from ipamguard import openssl\n"
        "shed = openssl.shed()\n"
        "from ipamguard.metrics import MetricsSnapshot, write_textfile\n"
        f"write_textfile({str(tmp_path / 'm.prom')!r}, MetricsSnapshot('1', True, False, 60))\n"
        "print(shed, [m for m in shed if sys.modules[m] is not None])\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['ssl', '_ssl', '_hashlib'] []\n"
    assert b"\nipamguard_repair_enabled 0.0\n" in (tmp_path / "m.prom").read_bytes()
