// /api/docs: starts Swagger UI (served by us, see api_docs.py) on the document the page names.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    validatorUrl: null, // the default sends the document to a validator on the internet
    // "Try it out" runs with the login cookie, and cookie calls that change something need the CSRF token.
    requestInterceptor: (request) => {
      if (new URL(request.url, location.href).origin === location.origin) request.headers["X-CSRF-Token"] = csrf;
      return request;
    },
  });
});
