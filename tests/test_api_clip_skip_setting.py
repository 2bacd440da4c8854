"""A1111's txt2img uses the clip skip setting (CLIP_stop_at_last_layers) unless the request overrides it."""

from __future__ import annotations

import json


def test_api_follows_the_clip_skip_setting(studio_factory) -> None:
    srv = studio_factory(("--api", "--nowebui"))
    body = {"prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 1}
    with srv.client() as client:
        assert client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code == 200
        info = json.loads(client.post("/sdapi/v1/txt2img", json=body).json()["info"])
        assert "Clip skip: 2" in info["infotexts"][0]
        override = {**body, "override_settings": {"CLIP_stop_at_last_layers": 1}}
        info = json.loads(client.post("/sdapi/v1/txt2img", json=override).json()["info"])
        assert "Clip skip" not in info["infotexts"][0]
