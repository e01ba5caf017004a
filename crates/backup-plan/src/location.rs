//! What a user typed, resolved into a kind of backup and a connection configuration.

use pg_config::Config;

use crate::PlanError;

/// The URI scheme of the physical connector (Plakar's `postgres+bin://` sources).
pub const PHYSICAL_SCHEME: &str = "postgres+bin://";

/// The kind of backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A base backup over the replication protocol (`postgres+bin://`).
    Physical,
    /// `pg_dump` and friends (`postgres://`).
    Logical,
}

/// A resolved backup location.
#[derive(Clone, Debug)]
pub struct Location {
    /// Which kind of backup it asks for.
    pub kind: Kind,
    /// The connection configuration (libpq rules: the URI or keywords, then `PG*` variables
    /// and the passfile when connecting).
    pub config: Config,
}

impl Location {
    /// Resolves `text`:
    ///
    /// - `postgres+bin://[user[:password]@]host[:port]` is a physical backup; a database in its
    ///   path is an error (a physical backup is the whole cluster);
    /// - `postgres://…` and `postgresql://…` are logical, unless `kind` says physical (the
    ///   CLI's `backup physical -d postgresql://…`);
    /// - libpq keywords (`host=… user=…`, or the empty string for the `PG*` defaults) take
    ///   `kind`, and are an error without it.
    pub fn parse(text: &str, kind: Option<Kind>) -> Result<Self, PlanError> {
        if let Some(rest) = text.strip_prefix(PHYSICAL_SCHEME) {
            let config = Config::parse(&format!("postgresql://{rest}")).map_err(PlanError::Config)?;
            if config.dbname().is_some_and(|d| !d.is_empty()) {
                return Err(PlanError::DatabaseInPhysicalLocation);
            }
            return Ok(Self { kind: Kind::Physical, config });
        }
        let is_uri = text.starts_with("postgres://") || text.starts_with("postgresql://");
        let kind = match (kind, is_uri) {
            (Some(kind), _) => kind,
            (None, true) => Kind::Logical,
            (None, false) => return Err(PlanError::UnknownKind(keywords_hint(text))),
        };
        let config = Config::parse(text).map_err(PlanError::Config)?;
        Ok(Self { kind, config })
    }
}

/// What to show of keywords in an error: the keyword names only, never a value (a password).
fn keywords_hint(text: &str) -> String {
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| format!("{k}=…")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_scheme() {
        let l = Location::parse("postgres+bin://replicator:secret@db.example.com:5433", None).unwrap();
        assert_eq!(l.kind, Kind::Physical);
        assert_eq!(l.config.user(), Some("replicator"));
        let err = Location::parse("postgres+bin://u@h/mydb", None).unwrap_err();
        assert!(matches!(err, PlanError::DatabaseInPhysicalLocation), "{err}");
        assert!(err.to_string().contains("a physical backup is the whole cluster"));
    }

    #[test]
    fn uris_are_logical_unless_told() {
        assert_eq!(Location::parse("postgres://u@h/db", None).unwrap().kind, Kind::Logical);
        assert_eq!(Location::parse("postgresql://u@h", None).unwrap().kind, Kind::Logical);
        assert_eq!(Location::parse("postgresql://u@h", Some(Kind::Physical)).unwrap().kind, Kind::Physical);
    }

    #[test]
    fn keywords_need_a_kind_and_never_echo_values() {
        let err = Location::parse("host=/tmp password=hunter2", None).unwrap_err().to_string();
        assert!(err.contains("host=…") && !err.contains("hunter2"), "{err}");
        assert_eq!(
            Location::parse("host=/tmp port=5432", Some(Kind::Physical)).unwrap().kind,
            Kind::Physical
        );
        assert!(Location::parse("", Some(Kind::Physical)).is_ok());
    }

    #[test]
    fn invalid_strings() {
        assert!(matches!(Location::parse("host='x", Some(Kind::Physical)), Err(PlanError::Config(_))));
        assert!(matches!(Location::parse("postgres+bin://h:notaport", None), Err(PlanError::Config(_))));
    }
}
