#!/usr/bin/env bash
# Builds the Debian package from this clone, offline, and checks it with lintian:
#
#     packaging/build-deb.sh [OUTPUT-DIR]     (default: dist/)
#
# Needs: apt-get install debhelper dh-python pybuild-plugin-pyproject python3-all
#   python3-setuptools python3-dbus-next python3-structlog python3-pyinotify python3-xxhash help2man
#   lintian (and dpkg-dev, fakeroot: there with debhelper)
# packaging/debian/ becomes debian/ of a staging copy of the source (the clone
# itself stays clean); dpkg-buildpackage -us -uc -b builds there. The .deb and
# lintian's report (ipamguard.lintian) land in OUTPUT-DIR; lintian errors fail.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$SRC/dist}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

version=$(sed -n '1s/^ipamguard (\([^)-]*\).*/\1/p' "$SRC/packaging/debian/changelog")
upstream=$(sed -n 's/^version = "\(.*\)"/\1/p' "$SRC/pyproject.toml" | head -1)
[ "$version" = "$upstream" ] || {
    echo "build-deb.sh: debian/changelog says $version, pyproject.toml $upstream:" \
        "add a changelog entry (dch -v $upstream-1)" >&2
    exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/ipamguard-$version
mkdir "$stage"
(cd "$SRC" && shopt -s nullglob && tar -cf - --exclude=__pycache__ --exclude='*.pyc' \
    --exclude=packaging/debian pyproject.toml ipamguard systemd packaging README* LICENSE*) \
    | tar -C "$stage" -xf -
cp -r "$SRC/packaging/debian" "$stage/debian"

# Debian's own tools and Python only (not a pyenv or venv earlier in PATH).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV
(cd "$stage" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
    tail -50 "$work/build.log" >&2
    echo "build-deb.sh: dpkg-buildpackage failed (last 50 lines above)" >&2
    exit 1
}
deb=$(ls "$work"/ipamguard_"$version"-*_all.deb)
cp "$deb" "$OUT/"
lintian --info --display-info "$work"/ipamguard_*.changes >"$OUT/ipamguard.lintian" 2>&1 || true
cat "$OUT/ipamguard.lintian"
if grep -q '^E: ' "$OUT/ipamguard.lintian"; then
    echo "build-deb.sh: lintian reports errors" >&2
    exit 1
fi
echo "built $OUT/$(basename "$deb")"
