//! The OpenAPI 3 document of every endpoint, generated with utoipa from the types the handlers
//! parse and answer. Request limits are settings, while utoipa's attributes are literals: the
//! derived document states the defaults, and [`ApiDoc::with_limits`] the server's own.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, Number, OpenApi};

use super::Limits;
use super::routes::{models, movies, ops, recommend};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "movierec", description = "Next-movie recommendations over MovieLens"),
    paths(
        recommend::post_recommend,
        recommend::get_job,
        movies::search,
        movies::get_movie,
        models::list,
        models::promote,
        ops::health,
        ops::live,
        ops::ready,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(
        recommend::RecommendBody,
        recommend::Accepted,
        recommend::JobView,
        recommend::ResultView,
        recommend::ItemView,
        recommend::ModelView,
        movies::MovieView,
        movies::SearchResults,
        models::ModelRegistry,
        models::RegistryModel,
        models::PromoteBody,
        models::Promoted,
        models::PromotedModel,
        ops::Health,
        ops::DependencyHealth,
        ops::Live,
        ops::Ready,
        super::readiness::WorkerView,
        super::ErrorBody,
    )),
    modifiers(&BearerAuth, &ConnectionCapResponses)
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The document, with the limits of `POST /recommend`'s body set to `limits`.
    pub fn with_limits(limits: &Limits) -> utoipa::openapi::OpenApi {
        let mut doc = Self::openapi();
        let body = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("RecommendBody"));
        if let Some(RefOr::T(Schema::Object(body))) = body {
            if let Some(RefOr::T(Schema::Object(k))) = body.properties.get_mut("k") {
                k.maximum = Some(Number::UInt(limits.max_k));
            }
            for (field, max) in [
                ("sequence", limits.max_sequence),
                ("avoided", limits.max_avoided()),
            ] {
                if let Some(RefOr::T(Schema::Array(ids))) = body.properties.get_mut(field) {
                    ids.max_items = Some(max);
                }
            }
        }
        let search = doc
            .paths
            .paths
            .get_mut("/movies/search")
            .and_then(|item| item.get.as_mut())
            .and_then(|op| op.parameters.as_mut());
        for param in search.into_iter().flatten() {
            if let RefOr::T(param) = param
                && param.name == "limit"
                && let Some(RefOr::T(Schema::Object(limit))) = param.schema.as_mut()
            {
                limit.maximum = Some(Number::UInt(limits.max_search_limit));
            }
        }
        doc
    }
}

/// Declares on every operation but the health probes the 503 a request gets on a connection over
/// `RECSYS_MAX_CONNECTIONS` (see [`super::connections`]): it can come on any route, so a client
/// (or schemathesis) must expect it there.
struct ConnectionCapResponses;

/// What the 503 of a connection over the cap is, in the document.
const OVER_CAP: &str = "over RECSYS_MAX_CONNECTIONS (`too_many_connections`); see Retry-After";

impl Modify for ConnectionCapResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for (path, item) in &mut openapi.paths.paths {
            if path.starts_with("/health") {
                continue;
            }
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                match op.responses.responses.get_mut("503") {
                    Some(RefOr::T(res)) => {
                        res.description = format!("{}, or {OVER_CAP}", res.description)
                    }
                    Some(RefOr::Ref(_)) => {}
                    None => {
                        let content = ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build();
                        let res = ResponseBuilder::new()
                            .description(format!("Connection {OVER_CAP}"))
                            .content("application/json", content)
                            .build();
                        op.responses.responses.insert("503".into(), RefOr::T(res));
                    }
                }
            }
        }
    }
}

/// Declares the `bearer` security scheme the JSON endpoints use when a secret is set.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The `RecommendBody` schema of a document, as JSON.
    fn body_schema(doc: &utoipa::openapi::OpenApi) -> Value {
        let json = serde_json::to_value(doc).unwrap();
        json["components"]["schemas"]["RecommendBody"].clone()
    }

    /// The limits a schema states: (k min, k max, sequence max, avoided max, id minimum).
    fn stated(schema: &Value) -> (u64, u64, u64, u64, u64, u64) {
        let p = &schema["properties"];
        let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{schema}"));
        (
            n(&p["k"]["minimum"]),
            n(&p["k"]["maximum"]),
            n(&p["sequence"]["maxItems"]),
            n(&p["avoided"]["maxItems"]),
            n(&p["sequence"]["items"]["minimum"]),
            n(&p["avoided"]["items"]["minimum"]),
        )
    }

    #[test]
    fn the_derived_document_states_the_default_limits() {
        let limits = Limits::default();
        let schema = body_schema(&ApiDoc::openapi());
        assert_eq!(
            stated(&schema),
            (
                1,
                limits.max_k as u64,
                limits.max_sequence as u64,
                limits.max_avoided() as u64,
                1,
                1
            ),
            "{schema}"
        );
        assert_eq!(schema["additionalProperties"], false, "{schema}");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, ["sequence", "k"]);
    }

    #[test]
    fn the_served_document_states_the_configured_limits() {
        let limits = Limits {
            max_k: 7,
            max_sequence: 1500,
            max_search_limit: 9,
        };
        let doc = ApiDoc::with_limits(&limits);
        let schema = body_schema(&doc);
        assert_eq!(stated(&schema), (1, 7, 1500, 1500, 1, 1), "{schema}");
        let json = serde_json::to_value(&doc).unwrap();
        let search = &json["paths"]["/movies/search"]["get"]["parameters"];
        let limit = search
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
        assert_eq!(limit["schema"]["maximum"], 9, "{limit}");
    }

    #[test]
    fn query_and_path_limits_are_declared() {
        let json = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let param = |path: &str, method: &str, name: &str| {
            json["paths"][path][method]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()["schema"]
                .clone()
        };
        let wait = param("/recommend", "post", "wait_ms");
        assert_eq!(
            (&wait["minimum"], &wait["maximum"]),
            (&0.into(), &10000.into())
        );
        assert_eq!(param("/movies/{movie_id}", "get", "movie_id")["minimum"], 1);
        assert_eq!(param("/movies/search", "get", "q")["maxLength"], 200);
    }

    #[test]
    fn every_route_but_the_probes_declares_the_connection_cap_503() {
        let json = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut checked = 0;
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let declared = op["responses"]["503"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("too_many_connections"));
                assert_eq!(declared, !path.starts_with("/health"), "{method} {path}");
                checked += 1;
            }
        }
        assert!(checked >= 9, "{checked} operations");
    }

    /// utoipa keys schemas by type name, and a second type of the same name silently replaces
    /// the first: each reference must lead to the type it was written for.
    #[test]
    fn same_named_types_do_not_replace_each_other() {
        let json = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &json["components"]["schemas"];
        let target = |reference: &serde_json::Value| {
            let name = reference["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap();
            schemas[name]["properties"].clone()
        };
        let answered_by = target(&schemas["ResultView"]["properties"]["model"]);
        assert!(answered_by.get("checkpoint").is_some(), "{answered_by}");
        let listed = target(&schemas["ModelRegistry"]["properties"]["models"]["items"]);
        assert!(listed.get("live").is_some(), "{listed}");
    }
}
