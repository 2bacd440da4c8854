"""An extension's setting (ui_settings) is an A1111 option: listed by GET /sdapi/v1/options, set by POST,
a bad value refused, and a client posting the whole dict back (Open WebUI) still works."""

from __future__ import annotations


def test_extension_option_over_the_options_api(studio_factory) -> None:
    srv = studio_factory(("--api", "--nowebui", "--enable-extension", "example"), load=False)
    with srv.client() as client:
        options = client.get("/sdapi/v1/options").json()
        assert "example_greeting" in options
        assert client.post("/sdapi/v1/options", json={"example_greeting": "Bonjour"}).status_code == 200
        options = client.get("/sdapi/v1/options").json()
        assert options["example_greeting"] == "Bonjour"
        assert client.post("/sdapi/v1/options", json=options).status_code == 200  # the whole dict posted back
        bad = client.post("/sdapi/v1/options", json={"example_greeting": 3})
        assert bad.status_code == 400 and "example_greeting" in bad.json()["detail"]
