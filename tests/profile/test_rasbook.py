"""RAS phone books: read as written, told apart from POP books, entries mapped to links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencm.cli.main import cli
from opencm.profile.rasbook import (
    BookKind,
    Verdict,
    map_entry,
    parse_ras,
    sniff_phonebook,
)
from tests.kit.conftest import run_cli
from tests.windows_profiles import AZURE_GATEWAY, ras_book, write_windows_profile


def test_reads_every_key_in_order_with_repeats_blocks_and_lines() -> None:
    book = parse_ras(ras_book("contoso-vnet"), "x.pbk")
    assert book.problems == []
    [entry] = book.entries
    assert entry.name == "contoso-vnet" and entry.line == 1
    # CustomAuthData appears three times, the last one empty, as in Azure's books.
    assert entry.get_all("CustomAuthData") == [
        "314442430000000000000000000000000000",
        "0A00000000000000",
        "",
    ]
    assert entry.get("phonenumber") == AZURE_GATEWAY
    assert entry.line_of("VpnStrategy") == 11
    heads = [block[0].key for block in entry.blocks()]
    assert heads == ["Encoding", "NETCOMPONENTS", "MEDIA", "DEVICE"]


def test_bad_lines_are_problems_with_their_line_never_exceptions() -> None:
    book = parse_ras(b"Stray=1\r\n[ok]\r\nno equals here\r\n[broken\r\nType=2\r\n", "b.pbk")
    assert [(p.line, p.message) for p in book.problems] == [
        (1, "a key before the first `[entry]` header"),
        (3, "expected `Key=value`"),
        (4, "expected an entry header `[name]`"),
        (5, "a key before the first `[entry]` header"),
    ]
    assert [e.name for e in book.entries] == ["ok"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (ras_book("x"), BookKind.RAS),
        (b"\xef\xbb\xbf; comment\r\n\r\n[Entry]\r\n", BookKind.RAS),
        ("[Entrée]\r\nType=2\r\n".encode("utf-16"), BookKind.RAS),
        (b"1,1,0,Seattle,206,5550100,0,0,0,0,\r\n", BookKind.CPSP),
        (b"\r\n\r\n", BookKind.EMPTY),
    ],
)
def test_kind_is_told_by_content(data: bytes, kind: BookKind) -> None:
    assert sniff_phonebook(data) is kind


@pytest.mark.parametrize(
    ("strategy", "device", "verdict", "link"),
    [
        (7, "WAN Miniport (IKEv2)", Verdict.LINK, "ikev2"),
        (8, "WAN Miniport (IKEv2)", Verdict.LINK, "ikev2"),
        (14, "WAN Miniport (IKEv2)", Verdict.LINK, "ikev2"),
        (5, "WAN Miniport (SSTP)", Verdict.LINK, "sstp"),
        (6, "WAN Miniport (SSTP)", Verdict.LINK, "sstp"),
        (3, "WAN Miniport (L2TP)", Verdict.UNSUPPORTED, "l2tp"),
        (1, "WAN Miniport (PPTP)", Verdict.REFUSED, "pptp"),
        (2, "WAN Miniport (PPTP)", Verdict.UNSUPPORTED, "l2tp"),
        (None, "WAN Miniport (IKEv2)", Verdict.LINK, "ikev2"),
        (None, "WAN Miniport (PPTP)", Verdict.REFUSED, "pptp"),
        (99, "WAN Miniport (SSTP)", Verdict.UNSUPPORTED, "none"),
    ],
)
def test_vpn_strategy_maps_to_a_link(
    strategy: int | None, device: str, verdict: Verdict, link: str
) -> None:
    [entry] = parse_ras(ras_book("e", strategy=strategy, device=device)).entries
    mapping = map_entry(entry)
    assert (mapping.verdict, mapping.link) == (verdict, link), mapping.reason
    assert mapping.server == AZURE_GATEWAY
    if verdict is Verdict.REFUSED:
        assert "insecure" in mapping.reason


@pytest.mark.parametrize(
    ("key", "credential"),
    [(13, "eap-tls"), (26, "eap-mschapv2"), (25, "peap"), (None, "mschapv2"), (4, "eap-4")],
)
def test_custom_auth_key_is_the_credential_kind(key: int | None, credential: str) -> None:
    [entry] = parse_ras(ras_book("e", auth_key=key)).entries
    assert map_entry(entry).credential == credential


def test_a_dial_up_entry_is_not_a_vpn_link() -> None:
    [entry] = parse_ras(ras_book("e", entry_type=1)).entries
    mapping = map_entry(entry)
    assert mapping.verdict is Verdict.UNSUPPORTED and "phone entry" in mapping.reason


def test_dns_servers_are_kept() -> None:
    [entry] = parse_ras(ras_book("e", dns="10.1.0.53")).entries
    assert map_entry(entry).dns == ("10.1.0.53",)


# --- every command that reads a .pbk says what it found and what it expected --------------


def _expect_ras_refusal(
    capsys: pytest.CaptureFixture[str], args: list[str], pbk: Path, expected: str
) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2, out + err
    assert f"opencm: error: {pbk}: this is a RAS phone book" in err, err
    assert "Traceback" not in err
    assert expected in err


def test_pops_on_an_azure_profile_says_it_holds_a_ras_book(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_windows_profile(tmp_path / "Cm")
    _expect_ras_refusal(
        capsys, ["pops", str(profile.cmp)], profile.pbk, "expected an MS-CPSP POP phone book"
    )


def test_phonebook_check_of_a_ras_book_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_windows_profile(tmp_path / "Cm")
    _expect_ras_refusal(
        capsys,
        ["phonebook", "check", str(profile.pbk)],
        profile.pbk,
        "`opencm phonebook check` expected",
    )


def test_phonebook_import_of_a_ras_book_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_windows_profile(tmp_path / "Cm")
    ws = ["phonebook", "--workspace", str(tmp_path / "ws")]
    assert run_cli(capsys, *ws, "create", "WORLD")[0] == 0
    _expect_ras_refusal(
        capsys, [*ws, "import", "WORLD", str(profile.pbk)], profile.pbk, "`opencm phonebook import`"
    )


def test_kit_new_component_with_a_ras_book_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_windows_profile(tmp_path / "Cm")
    args = ["kit", "new", str(tmp_path / "kit"), "--no-input", "--name", "Top", "--short", "TOP"]
    _expect_ras_refusal(
        capsys, [*args, "--component", str(profile.cmp)], profile.pbk, "`kit new --component`"
    )


def test_a_pop_book_still_checks(tmp_path: Path) -> None:
    pbk = tmp_path / "WORLD.pbk"
    pbk.write_bytes(b"1,1,0,Seattle,206,5550100,0,0,0,0,\r\n")
    result = CliRunner().invoke(cli, ["phonebook", "check", str(pbk), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pops"] == 1
