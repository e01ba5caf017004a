//! Shared fixture: a cluster holding every kind of object the manifest describes.

#![allow(dead_code, unreachable_pub)]

use pg_testkit::TestCluster;

/// Roles, memberships (nested; on PG 16+ the same pair granted twice by different grantors),
/// a tablespace with options, and databases of several encodings, limits and flags.
const CLUSTER_SQL: &str = "
CREATE ROLE cat_admin SUPERUSER LOGIN;
CREATE ROLE cat_repl REPLICATION LOGIN CONNECTION LIMIT 3;
CREATE ROLE cat_app LOGIN CREATEDB VALID UNTIL '2031-02-03 04:05:06.5+00';
CREATE ROLE cat_forever LOGIN VALID UNTIL 'infinity';
CREATE ROLE cat_rls NOLOGIN BYPASSRLS NOINHERIT CREATEROLE;
CREATE ROLE cat_readers NOLOGIN;
CREATE ROLE cat_staff NOLOGIN;
GRANT cat_readers TO cat_staff WITH ADMIN OPTION;
GRANT cat_staff TO cat_app;
GRANT cat_readers TO cat_app;
GRANT cat_readers TO cat_app GRANTED BY cat_staff;
ALTER TABLESPACE cat_ts SET (seq_page_cost = 2);
CREATE DATABASE cat_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' CONNECTION LIMIT 7;
CREATE DATABASE cat_main;
CREATE DATABASE cat_ts_db TABLESPACE cat_ts OWNER cat_app;
CREATE DATABASE cat_tmpl IS_TEMPLATE true;
CREATE DATABASE cat_noconn ALLOW_CONNECTIONS false;
CREATE DATABASE cat_private;
REVOKE CONNECT ON DATABASE cat_private FROM PUBLIC;
";

/// Every relation kind and the details the manifest records about them, in `cat_main`.
const MAIN_SQL: &str = r#"
CREATE SCHEMA app AUTHORIZATION cat_app;
CREATE SCHEMA "odd.schema";
CREATE SCHEMA odd;
CREATE TABLE app.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text DEFAULT 'anon',
    created timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT email_has_at CHECK (position('@' in email) > 0)
) WITH (fillfactor = 70, autovacuum_enabled = false);
CREATE TABLE app.orders (
    id serial PRIMARY KEY,
    customer_id bigint REFERENCES app.customers (id),
    total numeric(10, 2),
    placed date NOT NULL
);
CREATE INDEX orders_big ON app.orders (total) WHERE total > 100;
CREATE INDEX customers_lower_email ON app.customers (lower(email));
CREATE TABLE app.bookings (room int, during box, CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&));
CREATE UNLOGGED TABLE app.scratch (k text, v text);
CREATE TABLE app.events (id int, at date NOT NULL, kind text) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app.regions (code text, n int) PARTITION BY LIST (code);
CREATE TABLE app.regions_eu PARTITION OF app.regions FOR VALUES IN ('de', 'fr');
CREATE TABLE app.shards (id int) PARTITION BY HASH (id);
CREATE TABLE app.shards_0 PARTITION OF app.shards FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE app.shards_1 PARTITION OF app.shards FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE VIEW app.big_orders AS SELECT * FROM app.orders WHERE total > 100;
CREATE MATERIALIZED VIEW app.order_totals AS SELECT customer_id, sum(total) AS total FROM app.orders GROUP BY 1;
CREATE SEQUENCE app.invoice_seq;
CREATE FOREIGN DATA WRAPPER cat_dummy;
CREATE SERVER cat_srv FOREIGN DATA WRAPPER cat_dummy;
CREATE FOREIGN TABLE app.remote (a int) SERVER cat_srv;
CREATE TABLE app.secrets (owner_name text, body text);
ALTER TABLE app.secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.secrets FORCE ROW LEVEL SECURITY;
CREATE TABLE app.placed (a int) TABLESPACE cat_ts;
CREATE TABLE "odd.schema".x (a int);
CREATE TABLE odd."schema.x" (b int, c int);
INSERT INTO app.customers (email) SELECT 'u' || g || '@example.org' FROM generate_series(1, 50) g;
ANALYZE app.customers;
VACUUM app.orders;
"#;

/// Starts a cluster of `major` with the fixture; returns it and whether `hstore` was installed.
pub fn fixture(major: u32) -> (TestCluster, bool) {
    let cluster = TestCluster::start_with(major, pg_testkit::ClusterOptions::new().tablespace("cat_ts"))
        .expect("starting the cluster");
    cluster.sql(CLUSTER_SQL).expect("cluster fixture");
    cluster.sql_db("cat_main", MAIN_SQL).expect("cat_main fixture");
    // PG 12-14 report statistics through the asynchronous stats collector: wait for the
    // ANALYZE and VACUUM above to show.
    let stats = "SELECT count(*) FROM pg_stat_user_tables WHERE (relname = 'customers' AND last_analyze \
                 IS NOT NULL) OR (relname = 'orders' AND last_vacuum IS NOT NULL)";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while cluster.sql_db("cat_main", stats).expect("pg_stat_user_tables") != "2" {
        assert!(std::time::Instant::now() < deadline, "statistics never showed the fixture's ANALYZE");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let hstore = cluster
        .sql("SELECT count(*) FROM pg_available_extensions WHERE name = 'hstore'")
        .expect("pg_available_extensions")
        == "1";
    if hstore {
        cluster.sql_db("cat_main", "CREATE EXTENSION hstore SCHEMA app").expect("hstore");
    }
    (cluster, hstore)
}

/// The connection configuration of `cluster` for `user` (TCP, trust authentication).
pub fn config(cluster: &TestCluster, user: &str) -> pg_config::Config {
    pg_config::Config::parse(&cluster.conninfo(user)).expect("the test cluster's conninfo")
}

/// The project's connector to `cluster` as `user`.
pub fn connector(cluster: &TestCluster, user: &str) -> cluster_manifest::PgConnector {
    cluster_manifest::PgConnector::new(config(cluster, user))
}
