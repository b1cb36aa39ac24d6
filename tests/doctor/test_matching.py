"""networkd's .network search path, order and [Match] evaluation."""

from __future__ import annotations

import os
from pathlib import Path

from ipamguard.doctor.matching import (
    NetworkFile,
    Verdict,
    evaluate,
    first_match,
    order_config_files,
    parse_network_file,
    parse_unit,
    scan_network_files,
)

from .factories import bridge, ether, veth

PODMAN1 = bridge("podman1", 3)
VETH0 = veth("veth0", 4, master="podman1")
ETH0 = ether("eth0", 2)


def network(text: str, name: str = "10-test.network", *dropins: str) -> NetworkFile:
    return parse_network_file(Path("/etc/systemd/network") / name, text, dropins)


def test_parse_unit_sections_comments_and_continuations() -> None:
    text = """
# comment
; another
[Match]
Name=eth* \\
     wlan*
[Network]
DHCP = yes
[Match]
Type=ether
"""
    assert parse_unit(text) == [
        ("Match", "Name", "eth*  wlan*"),
        ("Network", "DHCP", "yes"),
        ("Match", "Type", "ether"),
    ]


def test_name_globs_accumulate_and_empty_assignment_resets() -> None:
    assert network("[Match]\nName=eth0\nName=veth* en*\n").match == {
        "Name": ["eth0", "veth*", "en*"]
    }
    assert network("[Match]\nName=eth0\nName=\nName=podman*\n").match == {"Name": ["podman*"]}


def test_name_matching_with_globs_and_negation() -> None:
    assert evaluate(network("[Match]\nName=*\n"), VETH0) == (Verdict.YES, ())
    assert evaluate(network("[Match]\nName=en* veth*\n"), VETH0)[0] is Verdict.YES
    assert evaluate(network("[Match]\nName=en* eth*\n"), VETH0)[0] is Verdict.NO
    assert evaluate(network("[Match]\nName=!veth*\n"), VETH0)[0] is Verdict.NO
    assert evaluate(network("[Match]\nName=!veth*\n"), PODMAN1)[0] is Verdict.YES
    assert evaluate(network("[Match]\nName=* !podman*\n"), PODMAN1)[0] is Verdict.NO
    assert evaluate(network("[Match]\nName=podman[0-9]*\n"), PODMAN1)[0] is Verdict.YES


def test_empty_match_section_matches_nothing() -> None:
    """networkd ignores such a file ("To match all interfaces, add Name=*")."""
    assert evaluate(network("[Network]\nDHCP=yes\n"), ETH0)[0] is Verdict.NO
    assert evaluate(network("[Match]\n[Network]\nDHCP=yes\n"), ETH0)[0] is Verdict.NO


def test_type_kind_driver_and_mac_are_judged_from_sysfs() -> None:
    assert evaluate(network("[Match]\nType=ether\n"), VETH0)[0] is Verdict.YES
    assert evaluate(network("[Match]\nType=ether\n"), PODMAN1)[0] is Verdict.NO
    assert evaluate(network("[Match]\nKind=bridge\n"), PODMAN1)[0] is Verdict.YES
    assert evaluate(network("[Match]\nKind=bridge\n"), VETH0)[0] is Verdict.NO
    assert evaluate(network("[Match]\nDriver=e1000e\n"), ETH0)[0] is Verdict.YES
    assert evaluate(network("[Match]\nDriver=e1000e\n"), VETH0)[0] is Verdict.NO
    mac = f"[Match]\nMACAddress=AA:BB:CC:DD:EE:FF {ETH0.mac.upper()}\n"
    assert evaluate(network(mac), ETH0)[0] is Verdict.YES
    assert evaluate(network(mac), VETH0)[0] is Verdict.NO


def test_keys_that_cannot_be_judged_make_a_maybe() -> None:
    maybe = network("[Match]\nName=*\nHost=build1\nVirtualization=no\n")
    assert evaluate(maybe, VETH0) == (Verdict.MAYBE, ("Host", "Virtualization"))
    # ... unless a key we can judge already rules the link out
    assert evaluate(network("[Match]\nName=en*\nHost=build1\n"), VETH0)[0] is Verdict.NO
    # Kind= of a NIC is not known from sysfs
    assert evaluate(network("[Match]\nKind=vlan\n"), ETH0)[0] is Verdict.MAYBE


def test_first_match_wins_and_earlier_maybes_are_reported() -> None:
    files = [
        network("[Match]\nName=en*\n", "10-uplink.network"),
        network("[Match]\nName=*\nHost=build1\n", "50-host.network"),
        network("[Match]\nName=*\n", "99-all.network"),
        network("[Match]\nName=veth*\n", "99-veth.network"),
    ]
    result = first_match(files, VETH0)
    assert result.file is files[2]
    assert [(f.name, keys) for f, keys in result.maybe] == [("50-host.network", ("Host",))]
    assert first_match(files[:1], VETH0).file is None


def test_dropins_add_match_conditions() -> None:
    narrowed = network("[Match]\nName=*\n", "99-all.network", "[Match]\nName=\nName=eth*\n")
    assert evaluate(narrowed, VETH0)[0] is Verdict.NO
    assert evaluate(narrowed, ETH0)[0] is Verdict.YES


def test_unmanaged_is_read_from_the_link_section() -> None:
    assert network("[Match]\nName=veth*\n[Link]\nUnmanaged=yes\n").unmanaged
    assert not network("[Match]\nName=veth*\n[Link]\nUnmanaged=no\n").unmanaged


def test_order_same_name_overrides_then_lexical_across_dirs() -> None:
    etc, run, lib = Path("/etc/n"), Path("/run/n"), Path("/usr/lib/n")
    ordered = order_config_files(
        [
            (etc, ["50-b.network", "99-z.network"]),
            (run, ["50-b.network", "10-a.network"]),
            (lib, ["99-z.network", "20-c.network", "Z.network"]),
        ]
    )
    assert ordered == [
        run / "10-a.network",
        lib / "20-c.network",
        etc / "50-b.network",  # /etc hides /run's file of that name
        etc / "99-z.network",
        lib / "Z.network",  # byte order: digits < upper case
    ]


def test_scan_reads_dirs_masks_dropins_and_skips_aliases(tmp_path: Path) -> None:
    etc, run, lib = tmp_path / "etc", tmp_path / "run", tmp_path / "lib"
    for directory in (etc, run, lib):
        directory.mkdir()
    (lib / "80-container-host0.network").write_text("[Match]\nName=host0\n")
    (etc / "80-container-host0.network").symlink_to("/dev/null")  # masked
    (lib / "99-default.network").write_text("[Match]\nName=*\n")
    (run / "10-empty.network").write_text("")  # empty: masked too
    (run / "50-veth.network").write_text("[Match]\nName=veth*\n")
    (etc / "50-veth.network.d").mkdir()
    (etc / "50-veth.network.d" / "narrow.conf").write_text("[Match]\nName=\nName=vethX\n")
    (run / "README").write_text("not a .network file")
    alias = tmp_path / "alias"
    os.symlink(lib, alias)  # like Debian's /lib -> /usr/lib: read once
    files = scan_network_files([etc, run, lib, alias])
    assert [f.path for f in files] == [run / "50-veth.network", lib / "99-default.network"]
    assert files[0].match == {"Name": ["vethX"]}
    assert first_match(files, VETH0).file is files[1]
