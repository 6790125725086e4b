"""The API's docs work without internet: Swagger UI and ReDoc load their scripts and styles from
the API server itself, never from a CDN."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/api/v1/docs", "/api/v1/redoc"])
def test_the_docs_page_references_only_same_origin_assets_and_they_load(module_api, page):
    client = module_api.client
    html = client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
    assets = ASSET.findall(html.text)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.scheme and not parts.netloc, f"{page} loads {asset} from another origin"
        loaded = client.get(asset)
        assert loaded.status_code == 200, asset
        kind = loaded.headers["content-type"]
        if asset.endswith(".js"):
            assert "javascript" in kind and len(loaded.content) > 100_000  # the bundle itself, not a stub
        elif asset.endswith(".css"):
            assert kind.startswith("text/css")
        elif asset.endswith(".png"):
            assert kind == "image/png"
    spec = re.search(r"""(?:url:\s*|spec-url=)["']([^"']+)["']""", html.text)
    assert spec is not None and client.get(spec.group(1)).json()["info"]["title"] == "tickbridge control API"


def test_the_bundled_scripts_fetch_nothing_from_a_cdn(module_api):
    """The scripts themselves do not pull more code or fonts from the internet when they run."""
    for name in ("swagger-ui-bundle.js", "redoc.standalone.js"):
        body = module_api.client.get(f"/api/v1/docs/assets/{name}").text
        assert "cdn.jsdelivr.net" not in body and "unpkg.com" not in body and "fonts.googleapis.com" not in body


def test_the_assets_folder_lists_nothing_and_reaches_nothing_outside(module_api):
    client = module_api.client
    assert client.get("/api/v1/docs/assets/").status_code == 404
    assert client.get("/api/v1/docs/assets/../../../api/settings.py").status_code == 404
    assert client.get("/api/v1/docs/assets/%2e%2e/core.py").status_code == 404
