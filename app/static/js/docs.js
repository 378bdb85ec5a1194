// /docs: Swagger UI on this API's own /openapi.json (no inline script: the CSP allows 'self' only).
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({ url: root.dataset.spec, dom_id: "#swagger-ui", deepLinking: true });
