#!/usr/bin/env bash
# Writes ipamguard(8) from the program's own --help texts (help2man), with one
# section per command (`ipamguard COMMAND --help`) and the files it uses.
#
#     packaging/manpage.sh IPAMGUARD-PROGRAM OUTPUT
#
# The page's date comes from SOURCE_DATE_EPOCH when set (reproducible builds).
set -euo pipefail

[ $# = 2 ] || { echo "usage: $0 IPAMGUARD-PROGRAM OUTPUT" >&2; exit 2; }
program=$1
output=$2
export COLUMNS=80  # argparse wraps to the terminal's width: the same page everywhere
command -v help2man >/dev/null || { echo "$0: help2man is not installed" >&2; exit 1; }

# roff-safe preformatted text: backslashes escaped, no line read as a request.
roff_text() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }

include=$(mktemp)
trap 'rm -f "$include"' EXIT
{
    echo '[COMMANDS]'
    # the command names: the top-level help lists them as "    NAME   summary"
    for cmd in $("$program" --help | sed -n 's/^    \([a-z][a-z-]*\)  .*/\1/p'); do
        echo ".SS \"ipamguard $cmd\""
        echo '.nf'
        "$program" "$cmd" --help | roff_text
        echo '.fi'
    done
    cat <<'EOF'
[FILES]
.TP
.I /etc/ipamguard/ipamguard.toml
The daemon's configuration (every key optional; as shipped: alert only).
.TP
.I /run/containers/networks/ipam.db
rootful podman's IP allocations (a bbolt file).
.TP
.I /var/lib/ipamguard/backups
Copies of ipam.db taken before every change.
.TP
.I ipamguard.service
The systemd unit; \fBjournalctl \-x \-u ipamguard\fR shows its entries with explanations.
[SEE ALSO]
.BR podman-network (1),
.BR systemd.exec (5),
.BR journalctl (1)
EOF
} >"$include"

help2man --no-info --section=8 \
    --name="finds and heals leaked IP allocations in podman's ipam.db" \
    --include="$include" --output="$output" "$program"
