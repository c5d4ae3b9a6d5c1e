// Starts Swagger UI on /docs. An external file rather than FastAPI's inline script, so /docs keeps a
// Content-Security-Policy without 'unsafe-inline'. The assets come from the app (fastapi-offline's copy).
/* global SwaggerUIBundle */
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  defaultModelsExpandDepth: 1,
});
