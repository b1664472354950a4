"""Reading back what the console sends: the command line and the parameters.

`parse_assignments` follows PowerShell's tokenizer for single-quoted
strings (ScanStringLiteral): any of ' ‘ ’ ‚ ‛ opens and closes the literal,
and two of them in a row stand for the second one. Nothing else is special
inside. If the console's quoting let a value end its literal early, what
follows would not be the script the console ships, and the emulator says so.
"""
from __future__ import annotations

import base64
import binascii
import re

QUOTES = "'\u2018\u2019\u201a\u201b"
ASSIGN = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*) = ")


class ParseError(Exception):
    pass


def parse_command_line(line: str) -> str:
    """The script text of `powershell [options] -EncodedCommand <base64>`."""
    words = line.split()
    if not words or words[0].lower() not in ("powershell", "powershell.exe"):
        raise ParseError(f"not a powershell command line: {line[:40]!r}")
    for i, word in enumerate(words[1:-1], start=1):
        flag = word.lower()      # PowerShell takes any prefix of -EncodedCommand, and -ec
        if flag == "-ec" or (len(flag) > 1 and "-encodedcommand".startswith(flag)):
            try:
                raw = base64.b64decode(words[i + 1], validate=True)
                return raw.decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise ParseError(f"bad -EncodedCommand: {e}") from None
    raise ParseError("no -EncodedCommand")


def read_literal(text: str, i: int) -> tuple[str, int]:
    """The value of the single-quoted literal opening at text[i], and the index after it."""
    if i >= len(text) or text[i] not in QUOTES:
        raise ParseError(f"expected a single-quoted string at {i}")
    i += 1
    value = []
    while True:
        if i >= len(text):
            raise ParseError("unterminated string")
        c = text[i]
        if c in QUOTES:
            if i + 1 < len(text) and text[i + 1] in QUOTES:
                value.append(text[i + 1])   # the pair stands for its second character
                i += 2
                continue
            return "".join(value), i + 1
        value.append(c)
        i += 1


def parse_assignments(text: str) -> tuple[dict[str, str], str]:
    """Leading `$Name = '<literal>'` lines -> ({Name: value}, the rest of the script)."""
    params: dict[str, str] = {}
    i = 0
    while (m := ASSIGN.match(text, i)) is not None:
        value, i = read_literal(text, m.end())
        if not text.startswith("\n", i):
            raise ParseError(f"${m.group(1)}: text after the string: {text[i:i + 20]!r}")
        params[m.group(1)] = value
        i += 1
    return params, text[i:]
