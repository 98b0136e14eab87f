//! TLS to PostgreSQL: a private cluster serves TCP with a certificate signed by a
//! throw-away CA; `sslmode=require` and `verify-full` (with `sslrootcert`) connect
//! encrypted, as `pg_stat_ssl` shows, through a one-off connection, the pool and the
//! `cortex` binary; a wrong CA is refused; no `sslmode` stays plain.

mod common;

use std::path::Path;
use std::process::Command;

use cortex::db::cluster::{ClusterOptions, EmbeddedCluster};
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for localhost/127.0.0.1 signed by it, and a second,
/// unrelated CA.
fn certificates(dir: &Path) {
    for (name, subject) in [("ca", "/CN=cortex-test-ca"), ("other", "/CN=other-ca")] {
        let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &cert,
                "-days", "2", "-subj", subject,
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

/// PostgreSQL reads its key only when it owns it and nobody else can.
fn hand_key_to_postgres(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for name in ["server.key", "server.crt"] {
        let path = dir.join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let user = std::env::var("CORTEX_PG_USER").unwrap_or_else(|_| "postgres".into());
            let cname = std::ffi::CString::new(user).unwrap();
            let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
            assert!(!pw.is_null(), "the PostgreSQL account exists");
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

async fn encrypted(conn: &mut AsyncPgConnection) -> bool {
    diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result::<Ssl>(conn)
        .await
        .unwrap()
        .ssl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_and_verify_full_connect_encrypted_and_a_wrong_ca_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    hand_key_to_postgres(certs.path());
    let port = common::tools::free_port();
    let mut options =
        ClusterOptions::new(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tls-pg"));
    options.extra_settings = vec![
        "ssl = on".into(),
        format!(
            "ssl_cert_file = '{}'",
            certs.path().join("server.crt").display()
        ),
        format!(
            "ssl_key_file = '{}'",
            certs.path().join("server.key").display()
        ),
        "listen_addresses = '127.0.0.1'".into(),
        format!("port = {port}"),
    ];
    let cluster = tokio::task::spawn_blocking(move || EmbeddedCluster::start(&options))
        .await
        .unwrap()
        .expect("start the TLS cluster");

    let base = format!("postgresql://cortex@127.0.0.1:{port}/postgres");
    let ca = certs.path().join("ca.crt");
    let other = certs.path().join("other.crt");
    let result = async {
        let mut plain = cortex::db::connect_once(&base).await.unwrap();
        assert!(!encrypted(&mut plain).await, "no sslmode: plain TCP");

        let require = format!("{base}?sslmode=require");
        let mut conn = cortex::db::connect_once(&require).await.unwrap();
        assert!(encrypted(&mut conn).await, "sslmode=require");

        let full = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
        let mut conn = cortex::db::connect_once(&full).await.unwrap();
        assert!(encrypted(&mut conn).await, "sslmode=verify-full");

        let wrong = format!("{base}?sslmode=verify-full&sslrootcert={}", other.display());
        let refused = cortex::db::connect_once(&wrong).await;
        assert!(refused.is_err(), "a certificate from another CA is refused");
        let ca_only = format!("{base}?sslmode=verify-ca&sslrootcert={}", ca.display());
        let mut conn = cortex::db::connect_once(&ca_only).await.unwrap();
        assert!(encrypted(&mut conn).await, "sslmode=verify-ca");
        let wrong_ca = format!("{base}?sslmode=verify-ca&sslrootcert={}", other.display());
        assert!(cortex::db::connect_once(&wrong_ca).await.is_err());

        // The pool the server uses.
        let pool = cortex::db::Database::connect(&full, &common::test_pool_config())
            .await
            .unwrap();
        let mut pooled = pool.conn(None).await.unwrap();
        assert!(encrypted(&mut pooled).await, "pooled connections");
        drop(pooled);

        // The binary, end to end: migrations over TLS.
        let out = common::cortex_command(&[("DATABASE_URL", full.as_str())])
            .arg("migrate")
            .output()
            .unwrap();
        common::stdout_of_success(&out);
    }
    .await;
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
    result
}
