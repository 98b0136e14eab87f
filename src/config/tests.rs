use super::*;
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn production_mode_is_a_jwt_secret_without_cortex_dev() {
    let prod = config(&[("JWT_SECRET", "s")]).unwrap();
    assert!(prod.production && !prod.introspection && !prod.limits.introspection);
    let opted_in = config(&[("JWT_SECRET", "s"), ("INTROSPECTION", "true")]).unwrap();
    assert!(opted_in.production && opted_in.introspection);
    let dev = config(&[("JWT_SECRET", "s"), ("CORTEX_DEV", "1")]).unwrap();
    assert!(!dev.production && dev.introspection);
    assert!(config(&[("QUERY_MAX_DEPTH", "1")]).is_err());
}

#[test]
fn the_cpu_budget_is_milliseconds_and_zero_turns_it_off() {
    let c = config(&[("QUERY_CPU_BUDGET_MS", "250")]).unwrap();
    assert_eq!(c.cpu_budget, Some(Duration::from_millis(250)));
    assert_eq!(
        config(&[("QUERY_CPU_BUDGET_MS", "0")]).unwrap().cpu_budget,
        None
    );
    assert!(config(&[("QUERY_CPU_BUDGET_MS", "soon")]).is_err());
    assert!(config(&[("QUERY_MAX_SELECTIONS", "5")]).is_err());
    let c = config(&[("QUERY_MAX_SELECTIONS", "200")]).unwrap();
    assert_eq!(c.limits.max_selections, 200);
}

#[test]
fn nothing_configured_means_embedded_defaults() {
    let c = config(&[]).unwrap();
    assert!(c.is_embedded());
    assert_eq!(c.pool.size, DEFAULT_POOL_SIZE);
    assert_eq!(c.pool.timeout, Duration::from_secs(5));
    assert_eq!(c.pool.statement_timeout, Duration::from_secs(10));
    assert_eq!(c.request_timeout, Duration::from_secs(30));
    assert_eq!(
        c.cpu_budget,
        Some(Duration::from_millis(DEFAULT_QUERY_CPU_BUDGET_MS))
    );
    assert_eq!(c.max_body_bytes, 100 * 1024);
    assert_eq!(c.limits, crate::graphql::limits::QueryLimits::default());
    assert!(!c.production && c.introspection);
    assert_eq!(c.pool.recycle, Duration::from_secs(1800));
    assert!(!c.pool.echo);
    assert_eq!(c.host.to_string(), "127.0.0.1");
    assert_eq!(c.port, 8000);
    assert_eq!(c.embedded.data_dir, PathBuf::from(".cortex"));
}

#[test]
fn database_url_wins_and_sqlalchemy_scheme_is_accepted() {
    let c = config(&[
        ("DATABASE_URL", "postgresql+asyncpg://u:p@h:5433/d"),
        ("POSTGRES_HOST", "x"),
    ])
    .unwrap();
    let DatabaseSource::Url(url) = &c.database else {
        panic!("{:?}", c.database)
    };
    assert_eq!(url.expose(), "postgresql://u:p@h:5433/d");
}

#[test]
fn url_is_built_from_parts() {
    let c = config(&[
        ("POSTGRES_USER", "cortex"),
        ("POSTGRES_PASSWORD", "p@ss"),
        ("POSTGRES_DB", "cortexcore"),
        ("POSTGRES_HOST", "db"),
    ])
    .unwrap();
    let DatabaseSource::Url(url) = &c.database else {
        panic!("{:?}", c.database)
    };
    assert_eq!(
        url.expose(),
        "postgresql://cortex:p%40ss@db:5432/cortexcore"
    );
}

#[test]
fn bad_values_name_the_variable_and_what_it_accepts() {
    let e = config(&[("DB_POOL_SIZE", "lots")]).unwrap_err();
    assert_eq!(e.variable, "DB_POOL_SIZE");
    assert!(e.to_string().contains("DB_POOL_SIZE") && e.to_string().contains("integer"));
    assert_eq!(
        config(&[("DB_POOL_SIZE", "0")]).unwrap_err().variable,
        "DB_POOL_SIZE"
    );
    assert_eq!(
        config(&[("DB_ECHO", "maybe")]).unwrap_err().variable,
        "DB_ECHO"
    );
    assert_eq!(config(&[("PORT", "70000")]).unwrap_err().variable, "PORT");
    assert_eq!(
        config(&[("HOST", "not a host")]).unwrap_err().variable,
        "HOST"
    );
    assert_eq!(
        config(&[("DB_POOL_TIMEOUT", "-1")]).unwrap_err().variable,
        "DB_POOL_TIMEOUT"
    );
    assert_eq!(
        config(&[("DATABASE_URL", "mysql://x")])
            .unwrap_err()
            .variable,
        "DATABASE_URL"
    );
    assert_eq!(
        config(&[("POSTGRES_PORT", "x")]).unwrap_err().variable,
        "POSTGRES_PORT"
    );
}

#[test]
fn secrets_are_not_printed_by_debug() {
    let c = config(&[
        ("DATABASE_URL", "postgres://me:hunter2@h/db"),
        ("JWT_SECRET", "jwt-hunter2"),
        ("METRICS_TOKEN", "metrics-hunter2"),
    ])
    .unwrap();
    let printed = format!("{c:?} {c:#?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("me:***@h/db"), "{printed}");
    let e = config(&[("JWT_SECRET", "s"), ("CORTEX_DEV", "hunter2")]).unwrap_err();
    assert_eq!(e.variable, "CORTEX_DEV");
}

#[test]
fn every_variable_is_in_the_readme_table_as_the_table_says() {
    let readme = include_str!("../../README.md");
    let table = vars::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's configuration table is out of date; it should read:\n{table}"
    );
    // And each variable's name appears where it is read.
    let sources = [include_str!("mod.rs"), include_str!("database.rs")];
    for var in vars::ALL {
        let constant = format!("&{}", var.name);
        assert!(
            sources.iter().any(|s| s.contains(&constant)),
            "{} is in the table but never read",
            var.name
        );
    }
}

#[test]
fn errors_say_what_the_table_accepts() {
    let e = config(&[("QUERY_CPU_BUDGET_MS", "soon")]).unwrap_err();
    assert_eq!(
        e.expected,
        "a number of milliseconds from 0 (off) to 600000"
    );
    let e = config(&[("MAX_BODY_BYTES", "1")]).unwrap_err();
    assert_eq!(e.expected, "a number of bytes from 1024 to 67108864");
    let e = config(&[("JWT_SECRET", "s"), ("INTROSPECTION", "perhaps")]).unwrap_err();
    assert_eq!(e.expected, "true or false");
    assert!(LogConfig::from_env().is_ok());
}

#[test]
fn passwords_never_appear_in_errors() {
    let e = config(&[("DATABASE_URL", "mysql://me:secret@h/db")]).unwrap_err();
    assert!(!e.to_string().contains("secret"));
}

#[test]
fn replicas_a_direct_url_and_the_pooler_mode_are_read_with_their_defaults() {
    let c = config(&[]).unwrap();
    assert!(c.replicas.urls.is_empty());
    assert_eq!(
        c.replicas.max_lag,
        Duration::from_secs(DEFAULT_REPLICA_MAX_LAG_SECS)
    );
    assert!(c.database_direct.is_none());
    assert!(c.pool.prepared_statements);

    let c = config(&[
        (
            "DATABASE_REPLICA_URLS",
            " postgres://r:pw@one/db , postgresql+asyncpg://r@two/db,",
        ),
        ("REPLICA_MAX_LAG", "0"),
        ("DATABASE_DIRECT_URL", "postgres://me:pw@primary/db"),
        ("DB_PREPARED_STATEMENTS", "false"),
    ])
    .unwrap();
    let urls: Vec<&str> = c.replicas.urls.iter().map(|u| u.expose()).collect();
    assert_eq!(urls, ["postgres://r:pw@one/db", "postgresql://r@two/db"]);
    assert_eq!(c.replicas.max_lag, Duration::ZERO);
    assert_eq!(
        c.database_direct.as_ref().map(|u| u.expose()),
        Some("postgres://me:pw@primary/db")
    );
    assert!(!c.pool.prepared_statements);
    assert!(!format!("{c:?}").contains("pw"), "passwords are masked");
}

#[test]
fn a_bad_replica_or_direct_url_names_its_variable_without_the_password() {
    let e = config(&[(
        "DATABASE_REPLICA_URLS",
        "postgres://r:hunter2@one/db,mysql://x",
    )])
    .unwrap_err();
    assert_eq!(e.variable, "DATABASE_REPLICA_URLS");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert_eq!(
        config(&[("DATABASE_REPLICA_URLS", " , ")])
            .unwrap_err()
            .variable,
        "DATABASE_REPLICA_URLS"
    );
    let e = config(&[("DATABASE_DIRECT_URL", "http://me:hunter2@h/db")]).unwrap_err();
    assert_eq!(e.variable, "DATABASE_DIRECT_URL");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(config(&[("REPLICA_MAX_LAG", "-1")]).is_err());
    assert!(config(&[("DB_PREPARED_STATEMENTS", "sometimes")]).is_err());
}
