"""Themes are data: TOML files from the package's themes/ and the user's folder.

A theme file holds Textual's theme fields plus five `oc-*` variables, the
colours of the console's state roles. A broken file is reported by name and
skipped; the console still starts.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

DEFAULT = "opsconsole-dark"
ROLE_VARIABLES = {"ok": "oc-ok", "warn": "oc-warn", "bad": "oc-bad",
                  "muted": "oc-muted", "accent": "oc-accent"}
# For Textual's own themes, which know nothing of oc-* variables.
ROLE_FALLBACKS = {"oc-ok": "success", "oc-warn": "warning", "oc-bad": "error",
                  "oc-muted": "foreground-darken-2", "oc-accent": "primary"}
FIELDS = ("primary", "secondary", "accent", "warning", "error", "success", "foreground",
          "background", "surface", "panel", "boost")


def theme_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent.parent
    bundled = here / "themes" if (here / "themes").is_dir() else here.parent / "themes"
    user = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "opsconsole/themes"
    return [bundled, user]


def load_theme(path: Path) -> Theme:
    """One theme file; ValueError says which field of which file is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: {e}") from None
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: needs a `name`")
    colours = {k: data[k] for k in FIELDS if k in data}
    variables = data.get("variables", {})
    for key, value in [*colours.items(), *variables.items()]:
        try:
            Color.parse(value)
        except (ColorParseError, TypeError):
            raise ValueError(f"{path}: {key} = {value!r} is not a colour") from None
    if "primary" not in colours:
        raise ValueError(f"{path}: needs a `primary` colour")
    return Theme(name=name, dark=bool(data.get("dark", True)), variables=dict(variables),
                 **colours)


def load_themes(dirs: list[Path] | None = None) -> tuple[list[Theme], list[str]]:
    """Every theme found, and a message per file that could not be used."""
    themes, errors = [], []
    for folder in dirs or theme_dirs():
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                themes.append(load_theme(path))
            except ValueError as e:
                errors.append(str(e))
    return themes, errors
