//! Logical backup and restore (`postgres://`): `pg_dump`, `pg_dumpall`, `pg_restore` and `psql`
//! as supervised, streaming child processes.
//!
//! # Backup
//!
//! [`BackupOptions::from_map`] parses the Plakar plugin's option map (keys as the Go plugin:
//! `location`, `host`, `port`, `username`, `password`, `database`, `compress`, `schema_only`,
//! `data_only`, `pg_bin_dir`, `ssl_mode`, `ssl_cert`, `ssl_key`, `ssl_root_cert`, the inline
//! `*_data` PEM variants, `exclude_databases`, `connect_timeout`) through the project's
//! libpq-compatible configuration ([`pg_config`]), so URIs, keywords and `PG*` variables mean
//! what they mean to the tools. [`plan_backup`] then checks everything before a record exists
//! (server reachable, database present, `pg_authid` readable or `--no-role-passwords` with a
//! warning, detected by SQLSTATE 42501, client tools at least as new as the server) and returns
//! the [`DumpSource`]s to run, in order, into one sink:
//!
//! | backup of | records |
//! |---|---|
//! | one database (`database` or the location's path) | `/globals.sql` (`pg_dumpall --globals-only`), `/<db>.dump` (`pg_dump -Fc`) |
//! | the whole cluster | `/all.sql` (`pg_dumpall`) |
//!
//! `/manifest.json` is not produced here: the orchestrator adds the metadata source. A dump's
//! record name is one clean path component whatever the database is called ([`names`]).
//!
//! Each [`DumpSource`] is a [`record_sink::Source`]: it announces its record (size unknown,
//! mtime now, so no consumer cache can reuse an older dump), starts its child only when the
//! sink answers [`record_sink::Wants::Body`], streams stdout into the sink in chunks of at most
//! [`CHUNK`] bytes with the sink's backpressure, and on EOF waits for the exit status **before**
//! ending the file: a non-zero exit or a signal is an error carrying the end of stderr. A
//! [`record_sink::Flow::Stop`] kills the child and ends the file (the consumer's choice, not a
//! failure).
//!
//! # Restore
//!
//! [`Restorer`] consumes the records of a logical backup in the order Plakar's walk delivers
//! them (depth-first, names sorted) and dispatches by name: `*.dump` → `pg_restore` (`-C` from
//! `postgres` with `create_db`), `globals.sql` → `psql` when `restore_globals`, `all.sql` →
//! `psql`, `manifest.json` read and not restored; the Go plugin's later layout
//! (`/00000-globals.sql`, `/NNNNN-<db>.dump`) too. A dump that arrives before `globals.sql`
//! is restored in one pass: its table of contents ([`archive`]) is kept, missing owners are
//! created as placeholders, and its privileges and other role-dependent entries are restored
//! once `globals.sql` ran (or at [`Restorer::finish`]); see [`restore`].
//!
//! # Supervision
//!
//! Passwords reach children only through a private 0600 passfile (`PGPASSFILE`), inline PEM
//! through 0600 files in the same private directory, removed on every path (drop, error,
//! panic). Database names are data: `PGDATABASE` for `pg_dump`, a quoted `dbname='…'` for
//! `pg_restore -d`, never spliced into a connection string. Each child runs in its own process
//! group with an explicit environment (no inherited `PG*` variable), stdin closed or fed from
//! the record, stderr drained into a bounded tail; dropping a running source or restorer kills
//! the whole group.

pub mod archive;
pub mod backup;
mod child;
pub mod error;
pub mod names;
pub mod options;
pub mod restore;
pub mod tools;

pub use backup::{BackupPlan, CHUNK, DumpKind, DumpOutcome, DumpReport, DumpSource, plan_backup};
pub use error::LogicalError;
pub use options::{BackupOptions, ConnectionOptions, RestoreOptions};
pub use restore::{FileOutcome, FileResult, RestoreReport, Restorer, restore_order};
pub use tools::{ToolSearch, ToolSet};

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point of the `logical_names` fuzz target, also replayed by the crate's tests.

    use crate::archive::{Progress, TocReader};
    use crate::names::{FileKind, classify, decode_db_name, dump_file_name, encode_db_name};

    /// The start of a custom-format archive (untrusted: it comes from a snapshot), fed to
    /// [`TocReader`] whole, grown exactly to each `NeedMore` it asks for (as the restorer
    /// feeds it), and grown by small steps (byte by byte for short inputs, 1 to 97 bytes at a
    /// time for longer ones): it never panics, every feeding agrees, and a table of contents
    /// it reads ends inside the input.
    pub fn archive(data: &[u8]) {
        let whole = TocReader::new().advance(data);
        let mut r = TocReader::new();
        let mut hinted = Ok(Progress::NeedMore(0));
        let mut n = 0;
        while let Ok(Progress::NeedMore(need)) = hinted {
            if need > data.len() || (need <= n && n == data.len()) {
                break;
            }
            n = need.max(n + 1).min(data.len());
            hinted = r.advance(&data[..n]);
        }
        let mut r = TocReader::new();
        let mut stepped = Ok(Progress::NeedMore(0));
        let (mut n, mut state) = (0, data.len() as u64);
        while n < data.len() {
            n += if data.len() <= 1024 {
                1
            } else {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                1 + (state >> 33) as usize % 97
            };
            stepped = r.advance(&data[..n.min(data.len())]);
            if !matches!(stepped, Ok(Progress::NeedMore(_))) {
                break;
            }
        }
        for (name, step) in [("hinted", &hinted), ("stepped", &stepped)] {
            match (&whole, step) {
                (Ok(Progress::Done(a)), Ok(Progress::Done(b))) => {
                    assert_eq!(a, b, "{name}");
                    assert!(*a <= data.len());
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{name}"),
                (Ok(Progress::NeedMore(_)), Ok(Progress::NeedMore(_))) => {}
                other => panic!("whole and {name} reads disagree: {other:?}"),
            }
        }
        for name in crate::restore::roles_in_database_properties(data) {
            assert!(!name.is_empty());
        }
    }

    /// Record names (untrusted: they come from a snapshot) and database names (bytes): the
    /// encoding always gives one clean component that decodes back; classifying any name
    /// never panics, and a name it reads as this layout's dump re-encodes to a name that
    /// classifies to the same database. Also feeds the stderr and `--version` line parsers.
    pub fn names(data: &[u8]) {
        let encoded = encode_db_name(data);
        let file = format!("{encoded}.dump");
        assert!(record_sink::RecordPath::new(format!("/{file}")).is_ok(), "{file:?}");
        assert!(!encoded.starts_with('.') && !encoded.contains('/'));
        assert_eq!(decode_db_name(&encoded).ok().as_deref(), (!data.is_empty()).then_some(data));
        let text = String::from_utf8_lossy(data);
        if let Ok(Some(FileKind::Dump { db, go_layout: false })) = classify(&text) {
            assert_eq!(
                classify(&dump_file_name(&db)).ok().flatten(),
                Some(FileKind::Dump { db: db.clone(), go_layout: false })
            );
        }
        let _ = crate::child::script_error_sqlstate(&text);
        let _ = crate::tools::parse_major(&text);
    }
}
