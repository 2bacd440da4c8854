"""An oversized upload to the web UI is refused with a readable message (never a traceback), both by
Gradio's own file-size check and by the studio's request-body limit (``--max-body-mb``)."""

from __future__ import annotations

import os


def test_oversized_uploads_are_refused_readably(studio_factory) -> None:
    srv = studio_factory(["--max-body-mb", "1"], with_ui=True, models=(), name="uploads")
    with srv.client() as http:
        small = http.post("/gradio_api/upload", files={"files": ("ok.png", os.urandom(1000), "image/png")})
        assert small.status_code == 200
        near = http.post("/gradio_api/upload",
                         files={"files": ("big.png", os.urandom(1024 * 1024 - 10 * 1024), "image/png")})
        assert near.status_code == 413 and "maximum allowed size" in near.text
        huge = http.post("/gradio_api/upload", files={"files": ("huge.png", os.urandom(3 * 1024 * 1024), "image/png")})
        assert huge.status_code == 413 and "--max-body-mb" in huge.json()["detail"]
        assert "Traceback" not in near.text + huge.text
