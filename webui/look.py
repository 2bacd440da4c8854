"""The studio's look where Gradio's defaults fall short: button icons as SVG files, and the page's
CSS and head script (``style.css``, ``head.html``), which :mod:`webui.mount` hands to Gradio.

Why SVG icons: emoji on buttons (🔄, 📂, ♻️...) render as empty boxes in a browser without an emoji font
(Debian's Chromium with its default fonts, many Linux desktops). An SVG file needs no font.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ICONS_DIR = HERE / "icons"
STYLE_CSS = HERE / "style.css"
HEAD_HTML = HERE / "head.html"
#: the page's own scripts: every ``*.js`` here is loaded, in name order (:func:`page_scripts`)
JS_DIR = HERE / "js"

#: the class of the views that show a result image whole (style.css, head.html)
RESULT_CLASS = "atelier-result"
#: the class of a button that shows only its icon (its tooltip comes from head.html)
ICON_ONLY_CLASS = "atelier-icon-only"


def page_scripts(folder: Path = JS_DIR) -> str:
    """Every ``webui/js/*.js`` as one ``<script>`` each, in name order, for Gradio's ``head`` (plain files:
    no build step). A file that could end its own script tag early is refused at start, not half-run."""
    tags = []
    for path in sorted(folder.glob("*.js")):
        code = path.read_text(encoding="utf-8")
        if "</script" in code.lower():
            raise ValueError(f"{path.name} contains '</script': it cannot be inlined in the page's head")
        tags.append(f"<script data-atelier-script=\"{path.name}\">\n{code}\n</script>")
    return "\n".join(tags)


def icon(name: str) -> str:
    """The path of ``webui/icons/<name>.svg`` for a button's ``icon=`` (Gradio copies it to its cache)."""
    path = ICONS_DIR / f"{name}.svg"
    if not path.is_file():
        raise FileNotFoundError(f"no icon {name!r} in {ICONS_DIR}")
    return str(path)


#: the user's own CSS in the data dir (A1111's ``user.css``), added after the studio's when the page is mounted
USER_CSS = "user.css"
THEMES = ("light", "dark")


def css_paths(data_dir: Path) -> list[Path]:
    """The page's style sheets: the studio's, then ``<data dir>/user.css`` when there is one (read at start)."""
    user = Path(data_dir) / USER_CSS
    return [STYLE_CSS, *([user] if user.is_file() else [])]


def page_theme(flag: str | None, setting: str) -> str:
    """The page's theme: ``--theme`` wins, then the ``theme`` setting; "system" follows the browser."""
    if flag in THEMES:
        return str(flag)
    return setting if setting in THEMES else "system"


#: run in the page at load with the theme: Gradio's dark mode is the ``dark`` class on <body>
APPLY_THEME_JS = """(theme) => {
  if (theme === "dark" || theme === "light") {
    document.body.classList.toggle("dark", theme === "dark");
    document.body.dataset.atelierTheme = theme;
  }
  return [];
}"""
