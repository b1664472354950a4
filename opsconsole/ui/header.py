"""The header line: parts in priority order, as many whole ones as the width holds."""
from __future__ import annotations

from rich.text import Text

GAP, MORE = "  ", " …"


def fit(parts: list[Text], width: int) -> Text:
    """The parts joined left to right while they fit in `width` cells, keeping room to
    say (…) that later ones were left out; a first part too long is cut short."""
    out = Text()
    for i, part in enumerate(parts):
        piece = Text(GAP) + part if i else part
        room = width - out.cell_len - (0 if i == len(parts) - 1 else len(MORE))
        if piece.cell_len <= room:
            out.append_text(piece)
        elif i == 0:
            cut = part.copy()
            cut.truncate(max(1, width), overflow="ellipsis")
            return cut
        else:
            out.append(MORE)
            return out
    return out
