//! The OpenAPI 3.1 document, made from the route table ([`crate::routes::ROUTES`]).

use serde_json::{json, Map, Value};

use crate::routes::{Access, ROUTES};

/// The document `GET /openapi.json` serves.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "JSON"},
                "4XX": {"description": "`{\"error\": {\"code\", \"message\"}}`"}
            }
        });
        if r.access != Access::Open {
            op["security"] = if r.access == Access::Write {
                json!([{"bearer": []}])
            } else {
                json!([{}, {"bearer": []}])
            };
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Instar", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
    })
}
