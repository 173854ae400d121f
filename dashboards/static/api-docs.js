// Starts Swagger UI (/docs) or ReDoc (/redoc) on the service's own OpenAPI document, from the vendored
// libraries (dashboards/api_docs.py): no inline script, nothing loaded from outside the service.
"use strict";
(() => {
  const body = document.body;
  const url = body.dataset.openapi || "/openapi.json";
  if (body.dataset.docs === "swagger") {
    window.ui = window.SwaggerUIBundle({ url, dom_id: "#swagger", deepLinking: true,
                                         presets: [window.SwaggerUIBundle.presets.apis], layout: "BaseLayout" });
  } else if (body.dataset.docs === "redoc") {
    window.Redoc.init(url, {}, document.getElementById("redoc"));
  }
})();
