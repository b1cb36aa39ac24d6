#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 / Ubuntu host (as root):
# installs what the tests need (apt + a venv in .venv), then lint, types, pytest.
# e2e tests (a real podman, journald, systemd-networkd, D-Bus in private
# namespaces) need root; without it they are skipped locally, and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3 python3-venv python3-dev gcc
    podman runc busybox-static conmon netavark aardvark-dns iptables containernetworking-plugins  # real podman (e2e; CNI too)
    golang-go golang-github-coreos-bbolt-dev   # Go's bbolt: the oracle
    strace                              # crash tests: kill the writer at every write
    systemd dbus iproute2 kmod          # journald, networkd, dbus-daemon, ip
    util-linux procps curl
    debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools  # the .deb
    python3-dbus-next python3-structlog python3-pyinotify python3-xxhash help2man lintian man-db
    rpm rpmlint shellcheck              # the RPM spec, the shell scripts
    prometheus                          # promtool (packaging/ipamguard.rules.yml)
    debootstrap debian-archive-keyring  # the Debian 13 root: podman 5.4, Python 3.13 (e2e)
)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check ipamguard tests bench
.venv/bin/ruff format --check ipamguard tests bench
.venv/bin/mypy --strict ipamguard

# the Debian 13 root (tests/.cache/trixie) for the podman 5.4 e2e tests and Python 3.13:
# built once (about a minute), then only checked
if [ "$(id -u)" = 0 ]; then
    .venv/bin/python tests/e2e/trixie.py build
fi

set +e
.venv/bin/python -m pytest -q "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi

# the whole suite only (no arguments): the unit tests once more, on Debian 13's
# Python 3.13 in that root (pyinotify needs pyasyncore there), in a sandbox
if [ $# = 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        set +e
        .venv/bin/python tests/e2e/trixie.py pytest -q -m "not e2e and not packaging and not oracle"
        py313=$?
        set -e
        if [ "$py313" != 0 ]; then
            echo "the unit tests failed on Python 3.13 (Debian 13 root): rc=$py313" >&2
            [ "$status" != 0 ] || status=$py313
        fi
    elif [ -n "${CI:-}" ]; then
        echo "the Python 3.13 unit run needs root (namespaces): that is a failure under CI" >&2
        [ "$status" != 0 ] || status=1
    else
        echo "skipped: the unit tests on Python 3.13 need root (a Debian 13 root in namespaces)"
    fi
fi
exit "$status"
