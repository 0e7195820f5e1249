"""`/docs`: Swagger UI from the files shipped in the `swagger-ui-bundle-v2` package, never a CDN,
so the API description works offline like the console does."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_URL: Final = "/docs"
ASSETS_URL: Final = "/docs/assets"


def install(app: FastAPI, *, title: str) -> None:
    """Serve Swagger UI at `/docs` and its assets under `/docs/assets` (the app is built with
    `docs_url=None`, `redoc_url=None`: FastAPI's own pages load their scripts from a CDN)."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} — API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        )
