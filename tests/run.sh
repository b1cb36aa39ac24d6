#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 / Ubuntu host (as root):
# installs what the tests need (apt + a venv in .venv), then lint, types, pytest.
# e2e tests (a real podman, journald, systemd-networkd, D-Bus in private
# namespaces) need root; without it they are skipped locally, and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3 python3-venv python3-dev gcc
    podman runc busybox-static conmon netavark aardvark-dns iptables  # real podman (e2e)
    golang-go golang-github-coreos-bbolt-dev   # Go's bbolt: the oracle
    strace                              # crash tests: kill the writer at every write
    systemd dbus iproute2 kmod          # journald, networkd, dbus-daemon, ip
    util-linux procps curl
    debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools  # the .deb
    python3-dbus-next python3-structlog python3-pyinotify help2man lintian man-db
    rpm rpmlint shellcheck              # the RPM spec, the shell scripts
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

set +e
.venv/bin/python -m pytest -q "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
