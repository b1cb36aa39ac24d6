"""packaging/rpm/ipamguard.spec, checked as far as a Debian host allows: rpmspec parses
it (with Fedora's values for the macros Debian's rpm lacks) and rpmlint finds no error.
A real build needs Fedora's pyproject-rpm-macros and systemd-rpm-macros.
"""

from __future__ import annotations

import re

import pytest
from pkgtools import REPO, pyproject_version, require_tools, run

pytestmark = pytest.mark.packaging

SPEC = REPO / "packaging" / "rpm" / "ipamguard.spec"
FEDORA_MACROS = {  # as Fedora's systemd-rpm-macros and python3-devel define them
    "_unitdir": "/usr/lib/systemd/system",
    "_journalcatalogdir": "/usr/lib/systemd/catalog",
    "python3_sitelib": "/usr/lib/python3.13/site-packages",
    "pyproject_files": "%{_builddir}/pyproject-files",
}


def expanded() -> str:
    require_tools("rpmspec")
    defines = [arg for k, v in FEDORA_MACROS.items() for arg in ("--define", f"{k} {v}")]
    return run(["rpmspec", "-P", *defines, SPEC]).stdout


def test_the_spec_parses_with_the_project_version() -> None:
    text = expanded()
    assert re.search(rf"^Version:\s+{re.escape(pyproject_version())}$", text, re.M)
    assert "%pyproject_wheel" in text  # left for Fedora's macros


def test_the_files_land_where_the_unit_expects_them() -> None:
    text = expanded()
    files = text[text.index("%files") :]
    assert "/usr/bin/ipamguard\n" in files
    assert "/usr/lib/systemd/system/ipamguard.service\n" in files
    assert "/usr/lib/systemd/catalog/ipamguard.catalog\n" in files
    assert "%config(noreplace) /etc/ipamguard/ipamguard.toml\n" in files
    assert "/usr/share/man/man8/ipamguard.8*" in files
    for scriptlet in ("%systemd_post", "%systemd_preun", "%systemd_postun_with_restart"):
        assert f"{scriptlet} ipamguard.service" in text


def test_rpmlint_finds_no_error() -> None:
    require_tools("rpmlint")
    result = run(["rpmlint", SPEC], check=False)
    summary = re.search(r"(\d+) errors?, (\d+) warnings?", result.stdout)
    assert summary, result.stdout + result.stderr
    assert summary.group(1) == "0", result.stdout
