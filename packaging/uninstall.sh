#!/usr/bin/env bash
# Removes what packaging/install.sh installed (as root):
#
#     sudo ./packaging/uninstall.sh [--purge]
#
# Stops and disables ipamguard.service, removes the unit, the journal catalog,
# the manual page, /usr/local/bin/ipamguard and the virtual environment
# /opt/ipamguard. Keeps the configuration (/etc/ipamguard) and the backups of
# ipam.db (/var/lib/ipamguard) unless --purge is given. podman.socket is left
# as it is. Running it again does nothing.
#
# With --user (as the user who ran install.sh --user): the user unit, the
# virtual environment and ~/.local/bin/ipamguard; --purge also removes
# ~/.config/ipamguard and the backups under $XDG_STATE_HOME/ipamguard.
#
# Options: --root DIR (or DESTDIR=DIR) as for install.sh; --purge; --user.
set -euo pipefail

ROOT=${DESTDIR:-}
PURGE=no
MODE=system

die() { echo "uninstall.sh: $*" >&2; exit 1; }
say() { echo "ipamguard: $*"; }

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --purge) PURGE=yes; shift ;;
        --user) MODE=user; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "$ROOT is not a directory"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" != / ] || ROOT=
fi
if [ "$MODE" = user ]; then
    : "${HOME:?HOME is not set}"
    DATA=${XDG_DATA_HOME:-$HOME/.local/share}
    CONF=${XDG_CONFIG_HOME:-$HOME/.config}
    STATE=${XDG_STATE_HOME:-$HOME/.local/state}
    UNIT=$CONF/systemd/user/ipamguard.service
    CATALOG=
    PROGRAM_FILES=("$HOME/.local/bin/ipamguard" "$DATA/man/man8/ipamguard.8" "$DATA/ipamguard")
    KEPT=("$CONF/ipamguard" "$STATE/ipamguard")
    SYSTEMCTL=(systemctl --user)
else
    [ "$(id -u)" = 0 ] || [ -n "$ROOT" ] || die "run as root (sudo $0), or with --user"
    UNIT=/usr/local/lib/systemd/system/ipamguard.service
    CATALOG=/usr/local/lib/systemd/catalog/ipamguard.catalog
    PROGRAM_FILES=(/usr/local/bin/ipamguard /usr/local/share/man/man8/ipamguard.8 /opt/ipamguard)
    KEPT=(/etc/ipamguard /var/lib/ipamguard)
    SYSTEMCTL=(systemctl)
fi

remove() {
    local path
    for path in "$@"; do
        if [ -e "$ROOT$path" ] || [ -L "$ROOT$path" ]; then
            rm -rf "${ROOT}${path:?}"
            say "removed $path"
        fi
    done
}

if [ -e "$ROOT$UNIT" ] && command -v systemctl >/dev/null; then
    if [ -n "$ROOT" ]; then
        if [ "$MODE" = user ]; then  # offline: the symlink that `enable` made
            rm -f "$ROOT$(dirname "$UNIT")/default.target.wants/ipamguard.service"
        else
            systemctl --root="$ROOT" --quiet disable ipamguard.service 2>/dev/null || true
        fi
    elif [ "$MODE" = user ] || [ -d /run/systemd/system ]; then
        "${SYSTEMCTL[@]}" disable --now --quiet ipamguard.service 2>/dev/null || true
    else
        systemctl --quiet disable ipamguard.service 2>/dev/null || true
    fi
fi

remove "$UNIT" "${PROGRAM_FILES[@]}"
had_catalog=no
if [ -n "$CATALOG" ]; then
    [ ! -e "$ROOT$CATALOG" ] || had_catalog=yes
    remove "$CATALOG"
fi
if [ "$had_catalog" = yes ] && command -v journalctl >/dev/null; then
    if [ -n "$ROOT" ]; then
        journalctl --root="$ROOT" --update-catalog || true
    else
        journalctl --update-catalog || true
    fi
fi
if [ -z "$ROOT" ] && [ "$MODE" = user ]; then
    "${SYSTEMCTL[@]}" daemon-reload 2>/dev/null || true
elif [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

if [ "$PURGE" = yes ]; then
    remove "${KEPT[@]}"
else
    for kept in "${KEPT[@]}"; do
        [ ! -e "$ROOT$kept" ] || say "kept $kept (remove it with --purge)"
    done
fi
