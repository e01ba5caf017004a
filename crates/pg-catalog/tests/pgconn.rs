//! The production connector (`pg-conn`) against real servers: it must produce exactly the
//! manifest the psql-backed test connector produces, and carry SQLSTATEs of refused connections.
#![cfg(feature = "pg-conn")]

mod common;

use pg_catalog::{CollectOptions, Manifest, PgConnector, collect};

/// The manifest without the fields that differ between two runs.
fn stable(mut m: Manifest) -> Manifest {
    m.collection_started_at = None;
    m.collection_finished_at = None;
    m.created_at.clear();
    // The two clients word a refused connection differently; what and where must agree.
    for e in &mut m.collection_errors {
        e.error.clear();
    }
    m
}

pg_testkit::per_major!(async fn pg_conn_matches_the_reference_connector(major) {
    let (cluster, _) = common::fixture(major);
    let options = CollectOptions::physical("127.0.0.1", cluster.port().to_string());
    for user in ["postgres", "cat_app"] {
        let config = pg_config::Config::parse(&cluster.conninfo(user)).expect("conninfo");
        let native = collect(&PgConnector::new(config), &options).await.expect("collect over pg-conn");
        let reference = collect(&common::connector(&cluster, user), &options).await.expect("collect over psql");
        assert_eq!(stable(native.clone()), stable(reference), "{user}");
        if user == "cat_app" {
            let refused: Vec<_> = native.collection_errors.iter().filter(|e| e.section == "connect").collect();
            assert_eq!(refused.len(), 1, "{:#?}", native.collection_errors);
            assert_eq!(refused[0].sqlstate.as_deref(), Some("42501"));
        }
    }
});
