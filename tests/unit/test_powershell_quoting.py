"""Parameters reach PowerShell as exactly the text the console meant.

There is no PowerShell here (`apt-cache policy powershell`: not in Debian),
so the proof is a reimplementation of PowerShell's own rule for
single-quoted strings (tokenizer.cs, ScanStringLiteral): any of ' ‘ ’ ‚ ‛
closes the literal unless the next character is one of them too, in which
case the pair stands for that next character. Nothing else is special.
"""
from __future__ import annotations

import base64
import itertools
import random
import re

import pytest

from opsconsole.providers import powershell as ps
from opsconsole.providers.base import ProviderError

SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"   # PowerShell's IsSingleQuote()


def scan_literal(text: str, i: int) -> tuple[str, int]:
    """PowerShell's ScanStringLiteral from the opening quote at text[i]."""
    assert text[i] in SINGLE_QUOTES
    i += 1
    out = []
    while i < len(text):
        c = text[i]
        i += 1
        if c in SINGLE_QUOTES:
            if i >= len(text) or text[i] not in SINGLE_QUOTES:
                return "".join(out), i          # the literal ends here
            c = text[i]                         # doubled: keep the second
            i += 1
        out.append(c)
    raise ValueError("unterminated literal")


def parse_statements(text: str) -> tuple[dict[str, str], str]:
    """`$name = '<literal>'` statements, each ended by a newline; and the rest."""
    found, i = {}, 0
    while m := re.compile(r"\$(\w+) = ").match(text, i):
        value, i = scan_literal(text, m.end())
        if text[i:i + 1] != "\n":
            return found, text[i:]              # the literal ended early: code follows
        found[m.group(1)] = value
        i += 1
    return found, text[i:]


HOSTILE = [
    "it's", "‘smart’", "‚low‛", "''", "'", "’", "a’", "’a", "‘’‚‛'", "a'’b",
    '"double"', "semi; Remove-Item C:\\ -Recurse", "$(Stop-Computer)", "`$env:x", "$env:x",
    "back`tick`", "new\nline", "cr\r\nlf", "tab\tbed", "@(1)", "{ }", "# not a comment",
    "'; Stop-Computer; '", "’; Stop-Computer; ‘", "\u00e9t\u00e9 \u2603 \U0001f600", "",
    " spaces ", "\\", "x" * ps.VM_NAME_MAX,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_round_trip(value):
    literal = ps.quote(value)
    assert scan_literal(literal + "\n", 0) == (value, len(literal))
    params, rest = parse_statements(ps.assignments({"Name": value, "Mode": value}) + "tail")
    assert params == {"Name": value, "Mode": value} and rest == "tail"


def test_every_short_mix_of_dangerous_characters_round_trips():
    alphabet = SINGLE_QUOTES + '"$`\n;a'
    for n in range(1, 4):
        for chars in itertools.product(alphabet, repeat=n):
            value = "".join(chars)
            assert parse_statements(ps.assignments({"Name": value}))[0] == {"Name": value}


def test_random_text_round_trips():
    rng = random.Random(5)
    pool = SINGLE_QUOTES + "\"$`();{}@#\n\r\t ab\u00e9\u2603\U0001f600\u201c\u201d\u2032"
    for _ in range(2000):
        value = "".join(rng.choice(pool) for _ in range(rng.randint(0, 30)))
        assert parse_statements(ps.assignments({"Name": value})) == ({"Name": value}, "")


def test_doubling_only_the_ascii_quote_would_not_be_enough():
    # Why every typographic quote is doubled: ’ alone ends the literal.
    naive = "$Name = '" + "x’; Stop-Computer; #".replace("'", "''") + "'\n"
    params, rest = parse_statements(naive)
    assert params == {} and rest.startswith("; Stop-Computer")


def test_nul_is_refused():
    with pytest.raises(ProviderError, match="NUL"):
        ps.quote("a\x00b")


@pytest.mark.parametrize("name", ["Host", "input", "ErrorActionPreference", "_", "PID", "1x",
                                  "a-b", "a b", "", "args", "true"])
def test_powershell_owned_or_bad_names_are_refused(name):
    with pytest.raises(ValueError):
        ps.assignments({name: "x"})


def test_scripts_take_exactly_their_declared_parameters():
    with pytest.raises(ValueError):
        ps.script_text("get-vm", {})
    with pytest.raises(ValueError):
        ps.script_text("get-vm", {"Name": "a", "Extra": "b"})
    with pytest.raises(ValueError):
        ps.script_text("no-such-script", {})
    with pytest.raises(ProviderError, match="at most 100"):
        ps.script_text("get-vm", {"Name": "x" * (ps.VM_NAME_MAX + 1)})


@pytest.mark.parametrize("name", sorted(ps.SCRIPTS))
def test_every_script_fits_cmd_exe_at_its_worst(name):
    # Longest values, all quote characters: each one doubles when quoted.
    worst = {k: "\u2019" * n for k, n in ps.SCRIPTS[name][1].items()}
    line = ps.command_line(name, worst)
    assert len(line) < ps.CMD_LIMIT
    assert line.startswith(ps.PREFIX)
    text = base64.b64decode(line[len(ps.PREFIX):]).decode("utf-16-le")
    assert text == ps.script_text(name, worst)
    body = ps.body(name)                # the prelude's own settings follow the values
    assert text.endswith(body)
    assert parse_statements(text[:len(text) - len(body)]) == (worst, "")


def test_too_long_a_command_is_refused_with_a_clear_error(monkeypatch):
    monkeypatch.setitem(ps.SCRIPTS, "get-vm", (("_vm",), {"Name": 10_000}))
    with pytest.raises(ProviderError, match=r"get-vm: the encoded command is \d+ characters "
                                            r"long; cmd.exe takes at most 8190"):
        ps.command_line("get-vm", {"Name": "x" * 3000})


def test_encoding_is_what_pywinrm_run_ps_sends():
    script = "Write-Output '\u2019'"
    assert ps.encode(script) == base64.b64encode(script.encode("utf_16_le")).decode("ascii")


# -- the scripts themselves --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ps.SCRIPTS))
def test_scripts_are_marked_and_use_their_parameters(name):
    source = ps.source(name)
    assert source.splitlines()[0] == f"# opsconsole:{name}"
    assert f"# opsconsole:{name}\n" in ps.body(name)
    for param in ps.SCRIPTS[name][1]:
        assert f"${param}" in source
    # Minifying is safe only without multi-line literals and block comments.
    for part in ("_prelude", *ps.SCRIPTS[name][0], name):
        text = ps.source(part)
        assert "@'" not in text and '@"' not in text and "<#" not in text, part


def test_vms_are_matched_exactly_never_by_wildcard():
    every = "".join(ps.source(n) for n in (*ps.SCRIPTS, "_prelude", "_vm", "_host"))
    assert not re.search(r"Get-VM\s+(-Name\s+)?\$", every)      # -Name expands wildcards
    assert "$_.Name -ceq $n" in ps.source("_vm")


def test_every_ps1_file_is_a_known_script():
    from importlib import resources
    files = {p.name[:-4] for p in resources.files(ps.__name__).iterdir()
             if p.name.endswith(".ps1") and not p.name.startswith("_")}
    assert files == set(ps.SCRIPTS)
