"""Host detection parsers (pure) and one real detection of this box."""

from __future__ import annotations

from installer import platform as hostinfo


def test_parse_os_release_quotes_and_comments() -> None:
    text = (
        '# comment\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        "VERSION_ID='12'\nID=debian\nID_LIKE=\"rhel fedora\"\nBROKEN LINE\n"
    )
    parsed = hostinfo.parse_os_release(text)
    assert parsed["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert parsed["VERSION_ID"] == "12"
    assert parsed["ID"] == "debian"
    assert parsed["ID_LIKE"] == "rhel fedora"
    assert "BROKEN LINE" not in parsed


def test_detect_wsl_generations() -> None:
    assert hostinfo.detect_wsl("5.15.153.1-microsoft-standard-WSL2") == 2
    assert hostinfo.detect_wsl("4.4.0-19041-Microsoft") == 1
    assert hostinfo.detect_wsl("6.1.0-18-amd64") is None


def test_package_manager_family() -> None:
    assert hostinfo.package_manager_for("linux", "ubuntu", ("debian",)) == "apt"
    assert hostinfo.package_manager_for("linux", "pop", ("ubuntu", "debian")) == "apt"
    assert hostinfo.package_manager_for("linux", "rocky", ("rhel", "centos", "fedora")) == "dnf"
    assert hostinfo.package_manager_for("linux", "opensuse-leap", ("suse",)) == "zypper"
    assert hostinfo.package_manager_for("darwin", "", ()) == "brew"
    assert hostinfo.package_manager_for("linux", "nixos", ()) is None


def test_normalise_arch() -> None:
    assert hostinfo.normalise_arch("AMD64") == "x86_64"
    assert hostinfo.normalise_arch("aarch64") == "arm64"
    assert hostinfo.normalise_arch("armv7l") == "armv7l"


def test_detect_host_on_this_box() -> None:
    host = hostinfo.detect_host()
    assert host.os == "linux"
    assert host.supported_arch
    assert host.arch in host.pretty
