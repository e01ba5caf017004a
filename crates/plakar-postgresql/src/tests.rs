use std::collections::BTreeMap;

use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn unknown_keys_are_named_with_the_valid_ones() {
    let err =
        ConfigMap::new(map(&[("location", "postgres+bin://h"), ("databse", "x")]), Connector::BinImporter)
            .unwrap_err();
    assert!(err.contains("unknown option \"databse\""), "{err}");
    assert!(err.contains("valid options: host, location, password, pg_bin_dir, port"), "{err}");
    // The logical importer does know `database`.
    assert!(
        ConfigMap::new(map(&[("location", "postgres://h"), ("database", "x")]), Connector::Importer).is_ok()
    );
    assert!(
        ConfigMap::new(map(&[("location", "postgres://h"), ("database", "x")]), Connector::BinImporter)
            .is_err()
    );
}

#[test]
fn standalone_keys_override_the_location() {
    let m = ConfigMap::new(
        map(&[
            ("location", "postgres+bin://alice:secret@db.example.com:5433"),
            ("host", "127.0.0.1"),
            ("port", "6543"),
            ("username", "bob"),
            ("password", "p@ss"),
            ("ssl_mode", "disable"),
            ("pg_bin_dir", ""),
        ]),
        Connector::BinImporter,
    )
    .unwrap();
    let c = connection(&m, backup_plan::Kind::Physical).unwrap();
    assert_eq!(c.location.config.user(), Some("bob"));
    assert_eq!(c.location.config.password().map(|p| p.expose()), Some("p@ss"));
    assert_eq!(c.origin().unwrap(), "127.0.0.1:6543");
    assert_eq!(c.pg_bin_dir, None, "an empty value is unset");
}

#[test]
fn bad_values_are_refused_with_their_key() {
    let bin = |pairs: &[(&str, &str)]| {
        let m = ConfigMap::new(map(pairs), Connector::BinImporter)?;
        connection(&m, backup_plan::Kind::Physical).map(drop)
    };
    let e = bin(&[("location", "postgres+bin://h"), ("port", "http")]).unwrap_err();
    assert!(e.starts_with("port:"), "{e}");
    let e = bin(&[("location", "postgres+bin://h"), ("ssl_mode", "sometimes")]).unwrap_err();
    assert!(e.contains("ssl_mode") && e.contains("verify-full"), "{e}");
    let e = bin(&[("location", "postgres+bin://h"), ("ssl_cert", "/a"), ("ssl_cert_data", "x")]).unwrap_err();
    assert_eq!(e, "ssl_cert and ssl_cert_data are mutually exclusive");
    let e = bin(&[("location", "postgres+bin://h/mydb")]).unwrap_err();
    assert!(e.contains("whole cluster"), "{e}");
    let e = bin(&[("host", "h")]).unwrap_err();
    assert!(e.contains("location"), "{e}");
    let e = bin(&[("location", "postgres+bin://u:hunter2@h:notaport")]).unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn inline_pem_goes_to_a_private_file_removed_on_drop() {
    let m = ConfigMap::new(
        map(&[("location", "postgres+bin://h"), ("ssl_root_cert_data", "-----BEGIN CERTIFICATE-----\n")]),
        Connector::BinImporter,
    )
    .unwrap();
    let c = connection(&m, backup_plan::Kind::Physical).unwrap();
    let dir = c.inline_files.dir.clone().expect("a private directory");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o700);
    let file = dir.join("sslrootcert");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "-----BEGIN CERTIFICATE-----\n");
    drop(c);
    assert!(!dir.exists());
}

#[test]
fn booleans_use_go_spellings() {
    let m = ConfigMap::new(
        map(&[("location", "postgres://h"), ("compress", "T"), ("schema_only", "0"), ("data_only", "yes")]),
        Connector::Importer,
    )
    .unwrap();
    assert_eq!(m.bool("compress"), Ok(true));
    assert_eq!(m.bool("schema_only"), Ok(false));
    assert!(m.bool("data_only").unwrap_err().contains("data_only"));
    assert_eq!(m.bool("absent"), Ok(false));
}

/// Each connector's schema lists exactly the keys its binary accepts, and declares the shapes
/// the binary enforces (enums, exclusive pairs, the required location).
#[test]
fn schemas_and_accepted_keys_agree() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("package");
    for connector in [Connector::BinImporter, Connector::Importer, Connector::Exporter] {
        let text = std::fs::read_to_string(dir.join(connector.schema_file())).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut in_schema: Vec<&str> =
            schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        in_schema.sort_unstable();
        let mut accepted = accepted_keys(connector);
        accepted.sort_unstable();
        assert_eq!(in_schema, accepted, "{}", connector.schema_file());
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], serde_json::json!(["location"]));
        let modes = schema["properties"]["ssl_mode"]["enum"].as_array().unwrap();
        assert_eq!(modes.len(), 6);
        let text_all = text.replace(char::is_whitespace, "");
        for pair in ["ssl_cert", "ssl_key", "ssl_root_cert"] {
            assert!(text_all.contains(&format!("\"required\":[\"{pair}\",\"{pair}_data\"]")), "{pair}");
        }
    }
    let manifest = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
    for connector in [Connector::BinImporter, Connector::Importer, Connector::Exporter] {
        assert!(manifest.contains(&format!("executable: {}", connector.executable())));
        assert!(manifest.contains(&format!("validator: {}", connector.schema_file())));
    }
    assert!(manifest.contains("api_version: v1.1.0"));
    assert!(!manifest.contains("\nflags:"), "the key is location_flags");
}
