//! Integration tests of the recommendation API: the real `movierec` binary (`serve`,
//! `serve --embedded`, `worker`) against a real `redis-server` on a free port and a real
//! catalogue built from ml-100k; each server binds port 0 and the tests read the port back from
//! its JSON log. One test binary; helpers and groups live in `tests/api/`.

#[path = "support/movielens.rs"]
mod movielens;

mod api {
    pub mod helpers;

    mod auth;
    mod edge;
    mod embedded;
    mod models;
    mod ops;
    mod queue;
    mod redis;
}
