"""The API's interactive docs, offline: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, from vendored files.

FastAPI's own pages load both from a CDN, a blank page on an operations centre's network without internet, and
start them with an inline script. These pages load the libraries from ``/ops/vendor/`` (dashboards/static/vendor,
copied from the npm registry's packages) and start them from ``/ops/api-docs.js``: no inline script, nothing from
outside the service.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" href="data:,">
  <title>{title}</title>
  {css}
</head>
<body data-docs="{kind}" data-openapi="{openapi}">
  <div id="{kind}"></div>
  <script src="{lib}"></script>
  <script src="/ops/api-docs.js"></script>
</body>
</html>
"""


# Nothing from outside the service (ReDoc's footer would fetch its maker's logo from their CDN: refused here).
# The libraries style themselves at run time, hence inline styles; ReDoc searches in a worker it builds from a blob.
DOCS_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'")


def add_offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) for ``app.openapi_url``; create the app with docs_url=None, redoc_url=None."""
    openapi = app.openapi_url or "/openapi.json"
    swagger = _PAGE.format(title=f"{app.title} · API（Swagger UI）", kind="swagger", openapi=openapi,
                           css='<link rel="stylesheet" href="/ops/vendor/swagger-ui/swagger-ui.css">',
                           lib="/ops/vendor/swagger-ui/swagger-ui-bundle.js")
    redoc = _PAGE.format(title=f"{app.title} · API（ReDoc）", kind="redoc", openapi=openapi, css="",
                         lib="/ops/vendor/redoc/redoc.standalone.js")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger, headers={"Content-Security-Policy": DOCS_POLICY})

    @app.get("/redoc", include_in_schema=False)
    def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc, headers={"Content-Security-Policy": DOCS_POLICY})
