"""Pure parts of network mode ``nat``: which resolv.conf instances see, the stored mode, the tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from squall.core.errors import InvalidParameterValue
from squall.functions.control.validation import squall_extras_from_tags
from squall.functions.invoker import network_mode
from squall.sandbox.node.isolation import resolv_conf_for_netns


def _conf(tmp: Path, name: str, *servers: str) -> str:
    p = tmp / name
    p.write_text("".join(f"nameserver {s}\n" for s in servers) + "options edns0\n")
    return str(p)


def test_reachable_resolvers_are_kept(tmp_path: Path) -> None:
    etc = _conf(tmp_path, "etc", "10.255.255.53")
    assert resolv_conf_for_netns(etc, _conf(tmp_path, "up", "9.9.9.9")) == (None, None)


def test_systemd_resolved_stub_is_replaced_by_its_upstreams(tmp_path: Path) -> None:
    etc = _conf(tmp_path, "etc", "127.0.0.53")
    up = _conf(tmp_path, "up", "192.0.2.53", "9.9.9.9")
    assert resolv_conf_for_netns(etc, up) == (up, None)


def test_only_loopback_resolvers_is_said(tmp_path: Path) -> None:
    etc = _conf(tmp_path, "etc", "127.0.0.1")
    resolv, why = resolv_conf_for_netns(etc, str(tmp_path / "missing"))
    assert resolv is None and why is not None and "127.0.0.1" in why


def test_tag_values_and_default() -> None:
    assert squall_extras_from_tags({}) == ("nat", False)
    for mode in ("nat", "none", "host"):
        assert squall_extras_from_tags({"squall:network": mode})[0] == mode
    with pytest.raises(InvalidParameterValue, match="'nat' \\(the default"):
        squall_extras_from_tags({"squall:network": "bridge"})


def test_host_only_when_tagged() -> None:
    # stored while "host" was the default: the tag was never set, so the function gets the new default
    assert network_mode({"network": "host", "tags": {}}) == "nat"
    assert network_mode({"network": "host", "tags": {"squall:network": "host"}}) == "host"
    assert network_mode({"network": "none"}) == "none"
    assert network_mode({}) == "nat"
