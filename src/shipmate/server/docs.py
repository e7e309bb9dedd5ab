"""The API's documentation page, served with Swagger UI's assets from the installed ``fastapi-offline``
package, so ``/api/v1/docs`` works without internet; ``/`` leads to the UI.

(The same package ships ReDoc, but ReDoc's page still fetches its logo from the internet.)"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles


def _assets() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI, prefix: str, ui_path: str) -> None:
    """Swagger UI at ``<prefix>/docs``; ``/`` redirects to ``ui_path``."""
    static = f"{prefix}/docs/assets"
    app.mount(static, StaticFiles(directory=_assets()), name="docs-assets")
    openapi_url = app.openapi_url or f"{prefix}/openapi.json"

    @app.get(f"{prefix}/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=f"{static}/favicon.png",
        )

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(ui_path, status_code=307)
