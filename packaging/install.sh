#!/usr/bin/env bash
# Installs ipamguard from this clone and starts it (as root):
#
#     sudo ./packaging/install.sh
#
# - Python >= 3.11 with venv (apt-get or dnf installs it when missing);
# - a virtual environment in /opt/ipamguard with ipamguard and its dependencies
#   (pip, from PyPI), /usr/local/bin/ipamguard pointing into it;
# - the systemd unit (/usr/local/lib/systemd/system/ipamguard.service), the journal
#   catalog (/usr/local/lib/systemd/catalog/ipamguard.catalog), and the default
#   configuration /etc/ipamguard/ipamguard.toml (alert only) unless one exists:
#   an existing configuration is never touched;
# - where systemd runs: enables and starts podman.socket and ipamguard.service;
#   elsewhere (a chroot, an image being built) enables them for the next boot.
#
# Safe to run again: only what changed is rewritten (after a `git pull`, the new
# code is installed and the service restarted); a second run changes nothing and
# says so. packaging/uninstall.sh removes it again.
#
# For one user's rootless podman, as that user (no root needed):
#
#     ./packaging/install.sh --user
#
# installs the virtual environment in ~/.local/share/ipamguard/venv,
# ~/.local/bin/ipamguard, the user unit ~/.config/systemd/user/ipamguard.service,
# ~/.config/ipamguard/ipamguard.toml (alert only) unless one exists, and runs
# `systemctl --user enable --now podman.socket ipamguard`.
#
# Options:
#   --user       the calling user's rootless podman (see above)
#   --root DIR   install into DIR instead of / (or DESTDIR=DIR), for tests and
#                inspection: the virtual environment works there only (its scripts
#                name DIR); the unit is enabled offline, nothing is started. For an
#                image, run install.sh inside it (chroot) instead.
#   --no-start   do not enable or start anything
#   --python P   the interpreter for the virtual environment (default: python3)
# Environment: IPAMGUARD_PIP_ARGS: extra arguments for pip install (e.g. a local
# wheel directory: --no-index --find-links DIR).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${DESTDIR:-}
START=yes
PYTHON=python3
MODE=system

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "ipamguard: $*"; }
DID=no       # did this run change anything at all?
did() { DID=yes; say "$@"; }

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --no-start) START=no; shift ;;
        --user) MODE=user; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PYTHON=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" != / ] || ROOT=
fi

if [ "$MODE" = user ]; then                          # paths as the user's session sees them
    [ "$(id -u)" != 0 ] || [ -n "$ROOT" ] || die "--user installs for the calling user: \
run it as that user, not as root"
    : "${HOME:?HOME is not set}"
    DATA=${XDG_DATA_HOME:-$HOME/.local/share}
    CONF=${XDG_CONFIG_HOME:-$HOME/.config}
    VENV=$DATA/ipamguard/venv
    UNIT=$CONF/systemd/user/ipamguard.service
    UNIT_SOURCE=systemd/user/ipamguard.service
    CATALOG=                                         # journal catalogs are system-wide
    CONFIG=$CONF/ipamguard/ipamguard.toml
    LINK=$HOME/.local/bin/ipamguard
    MANPAGE=$DATA/man/man8/ipamguard.8
    SYSTEMCTL=(systemctl --user)
else
    VENV=/opt/ipamguard                              # paths as the running system sees them
    UNIT=/usr/local/lib/systemd/system/ipamguard.service
    UNIT_SOURCE=systemd/ipamguard.service
    CATALOG=/usr/local/lib/systemd/catalog/ipamguard.catalog
    CONFIG=/etc/ipamguard/ipamguard.toml
    LINK=/usr/local/bin/ipamguard
    MANPAGE=/usr/local/share/man/man8/ipamguard.8
    SYSTEMCTL=(systemctl)
    [ "$(id -u)" = 0 ] || [ -n "$ROOT" ] || die "run as root (sudo $0), or with --user \
for your own rootless podman"
fi

for f in "$UNIT_SOURCE" systemd/ipamguard.catalog packaging/ipamguard.toml \
    pyproject.toml; do
    [ -f "$SRC/$f" ] || die "$SRC/$f is missing: run this from a complete clone"
done

CHANGED=no   # did anything that the running service uses change?
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# install_file SOURCE TARGET MODE: copy unless TARGET has that content and mode.
install_file() {
    local target=$ROOT$2
    if [ -f "$target" ] && [ ! -L "$target" ] && cmp -s "$1" "$target" \
        && [ "$(stat -c %a "$target")" = "${3#0}" ]; then
        return 1
    fi
    mkdir -p "$(dirname "$target")"
    install -m "$3" "$1" "$target"
    did "installed $2"
}

# --- Python ------------------------------------------------------------------
python_ok() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}
if ! python_ok "$PYTHON"; then
    [ -z "$ROOT" ] || die "$PYTHON (>= 3.11, with venv) is needed; install it first"
    [ "$MODE" = system ] || die "$PYTHON (>= 3.11, with venv) is needed: ask root to install \
python3 and python3-venv, or run again with --python PATH"
    if command -v apt-get >/dev/null; then
        did "installing python3 and python3-venv (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    elif command -v dnf >/dev/null; then
        did "installing python3 (dnf)"
        dnf install -y -q python3
    fi
    python_ok "$PYTHON" || die "ipamguard needs Python >= 3.11 with the venv module; \
'$PYTHON' is missing or older. Install one (e.g. python3.11 and python3.11-venv) and \
run again with --python python3.11"
fi

# --- the virtual environment -------------------------------------------------
# The source's fingerprint decides whether pip runs: a second run changes nothing.
fingerprint() {
    (cd "$SRC" && shopt -s nullglob && find pyproject.toml README* LICENSE* ipamguard \
        -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort \
        | xargs -d '\n' sha256sum | sha256sum | cut -d' ' -f1)
}
want="$(fingerprint) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
stamp=$ROOT$VENV/.ipamguard-source
if [ ! -x "$ROOT$VENV/bin/python" ] || ! "$ROOT$VENV/bin/python" -c '' 2>/dev/null; then
    rm -rf "$ROOT$VENV"
    did "creating the virtual environment $VENV"
    "$PYTHON" -m venv "$ROOT$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    # Build from a copy: an in-tree build would leave build/ and *.egg-info here.
    mkdir "$TMP/src"
    (cd "$SRC" && shopt -s nullglob && tar -cf - --exclude=__pycache__ --exclude='*.pyc' \
        pyproject.toml ipamguard README* LICENSE*) | tar -C "$TMP/src" -xf -
    did "installing ipamguard into $VENV (pip)"
    # shellcheck disable=SC2086  # IPAMGUARD_PIP_ARGS: words on purpose
    "$ROOT$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --use-pep517 \
        ${IPAMGUARD_PIP_ARGS:-} "$TMP/src" \
        || die "pip could not install ipamguard (see above)"
    echo "$want" >"$stamp"
    CHANGED=yes
fi
"$ROOT$VENV/bin/ipamguard" --help >/dev/null || die "the installed ipamguard does not run"

if [ "$(readlink "$ROOT$LINK" 2>/dev/null)" != "$VENV/bin/ipamguard" ]; then
    mkdir -p "$(dirname "$ROOT$LINK")"
    ln -sfn "$VENV/bin/ipamguard" "$ROOT$LINK"
    did "linked $LINK -> $VENV/bin/ipamguard"
fi

# --- systemd unit, journal catalog, configuration, manual page -------------------
sed "s|^ExecStart=/usr/bin/ipamguard |ExecStart=$VENV/bin/ipamguard |" \
    "$SRC/$UNIT_SOURCE" >"$TMP/unit"
grep -q "^ExecStart=$VENV/bin/ipamguard " "$TMP/unit" || die "unexpected ExecStart= in the unit"
unit_changed=no
if install_file "$TMP/unit" "$UNIT" 0644; then unit_changed=yes; CHANGED=yes; fi

catalog_changed=no
if [ -n "$CATALOG" ] && install_file "$SRC/systemd/ipamguard.catalog" "$CATALOG" 0644; then
    catalog_changed=yes
fi

if [ -e "$ROOT$CONFIG" ] || [ -L "$ROOT$CONFIG" ]; then
    :  # the administrator's (or an earlier run's): never overwritten
else
    install_file "$SRC/packaging/ipamguard.toml" "$CONFIG" 0644 || true
fi

# The manual page comes from the --help texts (help2man), where help2man is
# installed; its date is the source's, so that a second run writes the same page.
if command -v help2man >/dev/null \
    && SOURCE_DATE_EPOCH=$(stat -c %Y "$SRC/pyproject.toml") \
        bash "$SRC/packaging/manpage.sh" "$ROOT$VENV/bin/ipamguard" "$TMP/ipamguard.8"; then
    install_file "$TMP/ipamguard.8" "$MANPAGE" 0644 || true
fi

if [ "$catalog_changed" = yes ] && command -v journalctl >/dev/null; then
    if [ -n "$ROOT" ]; then
        journalctl --root="$ROOT" --update-catalog || say "journalctl --update-catalog failed"
    else
        journalctl --update-catalog || say "journalctl --update-catalog failed"
    fi
fi

# --- enable and start ------------------------------------------------------------
# enable_offline UNIT: enable without a running systemd (symlinks only); false if
# there is no such unit.
enable_offline() {
    local state
    state=$(systemctl ${ROOT:+--root="$ROOT"} is-enabled "$1" 2>/dev/null) || true
    case $state in
        "") return 1 ;;
        disabled)
            systemctl ${ROOT:+--root="$ROOT"} --quiet enable "$1"
            did "enabled $1${ROOT:+ in $ROOT}" ;;
    esac
}

user_manager() { [ -z "$ROOT" ] && systemctl --user show-environment >/dev/null 2>&1; }

if [ "$START" = no ] || ! command -v systemctl >/dev/null; then
    :
elif [ "$MODE" = user ]; then
    if ! user_manager; then
        say "no systemd user manager for $(id -un) here (log in through systemd-logind, or"
        say "run: loginctl enable-linger $(id -un)); then:"
        say "    systemctl --user enable --now podman.socket ipamguard"
    else
        [ "$unit_changed" = no ] || "${SYSTEMCTL[@]}" daemon-reload
        if "${SYSTEMCTL[@]}" cat podman.socket >/dev/null 2>&1; then
            "${SYSTEMCTL[@]}" enable --now --quiet podman.socket
        else
            say "warning: the user unit podman.socket was not found: ipamguard reports" \
                "leaks but releases nothing while podman's API cannot be asked"
        fi
        if [ "$CHANGED" = yes ] && "${SYSTEMCTL[@]}" --quiet is-active ipamguard.service; then
            "${SYSTEMCTL[@]}" restart ipamguard.service
            did "restarted ipamguard.service (new code or unit)"
        fi
        if ! "${SYSTEMCTL[@]}" --quiet is-active ipamguard.service \
            || ! "${SYSTEMCTL[@]}" --quiet is-enabled ipamguard.service; then
            "${SYSTEMCTL[@]}" enable --now --quiet ipamguard.service
            did "enabled and started your ipamguard.service"
        fi
        say "see: systemctl --user status ipamguard; journalctl --user -u ipamguard"
        say "to keep it running while you are logged out: loginctl enable-linger $(id -un)"
    fi
elif [ -n "$ROOT" ] || [ ! -d /run/systemd/system ]; then
    enable_offline ipamguard.service
    enable_offline podman.socket || true
    if [ -z "$ROOT" ]; then
        say "systemd is not running on this host: nothing was started (it starts with"
        say "systemd's next boot). To run it now:"
        say "    $VENV/bin/ipamguard daemon --config $CONFIG"
    fi
else
    [ "$unit_changed" = no ] || systemctl daemon-reload
    if systemctl cat podman.socket >/dev/null 2>&1; then
        systemctl enable --now --quiet podman.socket
    else
        say "warning: podman.socket not found (is podman installed?): ipamguard reports" \
            "leaks but releases nothing while podman's API cannot be asked"
    fi
    if [ "$CHANGED" = yes ] && systemctl --quiet is-active ipamguard.service; then
        systemctl restart ipamguard.service
        did "restarted ipamguard.service (new code or unit)"
    fi
    if ! systemctl --quiet is-active ipamguard.service \
        || ! systemctl --quiet is-enabled ipamguard.service; then
        systemctl enable --now --quiet ipamguard.service
        did "enabled and started ipamguard.service"
    fi
    say "see: systemctl status ipamguard; journalctl -u ipamguard"
fi
[ "$DID" = yes ] || say "already installed and up to date: nothing changed"
