"""The page's own scripts (webui/js/*.js): all inlined in the page's head in name order, each a plain
file with a header comment, and a file that would end its script tag early refused at start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webui.look import JS_DIR, page_scripts


def test_every_script_is_inlined_in_name_order() -> None:
    head = page_scripts()
    names = re.findall(r'<script data-atelier-script="([^"]+)">', head)
    assert names == sorted(p.name for p in JS_DIR.glob("*.js")) and names[0] == "atelier.js"
    assert {"token_counter.js", "keys.js", "attention.js", "generate_forever.js", "png_drop.js",
            "job_title.js"} <= set(names)
    assert head.count("<script") == head.count("</script>") == len(names)


def test_each_script_is_small_and_says_what_it_does() -> None:
    for path in JS_DIR.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("/*") and len(text.split("*/")[0]) > 80, path.name  # a header comment
        assert len(text.splitlines()) < 200, path.name


def test_a_script_that_could_close_its_tag_is_refused(tmp_path: Path) -> None:
    (tmp_path / "b.js").write_text("/* b */ let x = 1;", encoding="utf-8")
    (tmp_path / "a.js").write_text("/* a */ let y = 2;", encoding="utf-8")
    assert re.findall(r'data-atelier-script="([^"]+)"', page_scripts(tmp_path)) == ["a.js", "b.js"]
    (tmp_path / "c.js").write_text("document.write('</SCRIPT>')", encoding="utf-8")
    with pytest.raises(ValueError, match="c.js"):
        page_scripts(tmp_path)
