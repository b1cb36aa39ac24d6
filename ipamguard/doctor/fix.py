"""The fix: a drop-in ``.network`` file that makes networkd leave container links alone.

    # Written by `ipamguard doctor --fix` ...
    [Match]
    Name=podman[0-9]* veth*

    [Link]
    Unmanaged=yes

It lives in /etc/systemd/network (highest priority) under a name that sorts
before the operator's own files, since networkd applies the first file that
matches. Planning is pure (``plan_fix``); ``write_dropin`` is the only write.
The plan is idempotent: the same links and configs render the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ipamguard.doctor.analysis import MANAGED, NETWORKD_UNKNOWN, Finding
from ipamguard.doctor.links import Link
from ipamguard.doctor.matching import NetworkFile, first_match, parse_network_file
from ipamguard.doctor.netconfigs import family_pattern
from ipamguard.errors import FixError, Refused
from ipamguard.state import write_atomically

DROPIN_PATH = Path("/etc/systemd/network/00-ipamguard-container-links.network")
MARKER = "# Written by `ipamguard doctor --fix`"
VETH_PATTERN = "veth*"

NOTHING = "nothing"  # networkd manages no container link
WRITE = "write"  # create or update the drop-in, then reload networkd
RELOAD = "reload"  # the drop-in is in place already: only reload networkd


@dataclass(frozen=True)
class FixPlan:
    """What ``--fix`` would do, shown to the operator before it is done."""

    action: str
    path: Path
    content: str
    reason: str
    links: tuple[str, ...] = ()  # the container links networkd manages now
    warnings: tuple[str, ...] = field(default=())


def match_patterns(bridges: Iterable[str]) -> list[str]:
    """[Match] Name= globs: each bridge's family glob (or its own name), and veth*."""
    patterns = {family_pattern(bridge) or bridge for bridge in bridges}
    patterns.add(VETH_PATTERN)
    return sorted(patterns)


def render_dropin(bridges: Iterable[str]) -> str:
    """The drop-in's text for these container bridges (deterministic)."""
    return (
        f"{MARKER}: these links belong to the\n"
        "# container network stack (podman/netavark, CNI, docker); systemd-networkd must\n"
        "# not configure them (it would remove veths from their bridges). Delete this file\n"
        "# to hand them back to networkd.\n"
        "[Match]\n"
        f"Name={' '.join(match_patterns(bridges))}\n"
        "\n"
        "[Link]\n"
        "Unmanaged=yes\n"
    )


def plan_fix(
    findings: Sequence[Finding],
    bridges: Iterable[str],
    links: Sequence[Link],
    network_files: Sequence[NetworkFile],
    current: str | None,
    path: Path = DROPIN_PATH,
) -> FixPlan:
    """Decide what ``--fix`` does; ``current`` is the drop-in's text now, if any.

    Raises Refused if a file we did not write sits at ``path``.
    """
    managed = tuple(f.link for f in findings if f.kind == MANAGED and f.link)
    content = render_dropin(bridges)
    if not managed:
        if any(f.kind == NETWORKD_UNKNOWN for f in findings):
            reason = "systemd-networkd could not be asked; nothing written"
        else:
            reason = "systemd-networkd manages no container link"
        return FixPlan(NOTHING, path, content, reason)
    if current is not None and MARKER not in current:
        raise Refused(f"{path} exists and was not written by ipamguard; not replacing it")
    warnings = _unreached_links(managed, links, network_files, parse_network_file(path, content))
    if current == content:
        reason = f"{path} is in place already; networkd only needs to reload"
        return FixPlan(RELOAD, path, content, reason, managed, warnings)
    reason = f"{'update' if current is not None else 'create'} {path} and reload networkd"
    return FixPlan(WRITE, path, content, reason, managed, warnings)


def _unreached_links(
    managed: Sequence[str],
    links: Sequence[Link],
    network_files: Sequence[NetworkFile],
    dropin: NetworkFile,
) -> tuple[str, ...]:
    """Links that a file sorting before the drop-in would still catch first."""
    files = [f for f in network_files if f.name != dropin.name] + [dropin]
    files.sort(key=lambda f: os.fsencode(f.name))
    by_name = {link.name: link for link in links}
    warnings = []
    for name in managed:
        if name not in by_name:
            continue
        result = first_match(files, by_name[name])
        earlier = [f for f, _ in result.maybe if f is not dropin]
        if result.file is not dropin:
            caught = result.file.path if result.file else "no file"
            warnings.append(f"{name}: the drop-in does not match it ({caught} does)")
        elif earlier:
            names = ", ".join(str(f.path) for f in earlier)
            warnings.append(f"{name}: {names} sorts before the drop-in and may match it first")
    return tuple(warnings)


def read_current(path: Path = DROPIN_PATH) -> str | None:
    """The drop-in's text, None if there is none."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise FixError(f"cannot read {path}: {error}") from error


def write_dropin(plan: FixPlan) -> None:
    """Write the drop-in atomically (temp file, fsync, rename), mode 0644."""
    path = plan.path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(str(path), plan.content.encode(), 0o644, sync=True)
    except OSError as error:
        raise FixError(f"cannot write {path}: {error.strerror or error}") from error
