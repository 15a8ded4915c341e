//! The replica store over TLS: `sslmode=verify-full` with `sslrootcert`
//! connects only to a database whose certificate that CA signed, and the
//! connection is encrypted; `sslmode=disable` speaks plain.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use lodestone::store::{PostgresConfig, PostgresStore};

/// Writes `text` to `path`, readable by the cluster's user only.
fn private_file(path: &std::path::Path, text: &str, owner: Option<(u32, u32)>) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// The ids of the `postgres` user when the cluster runs as it (as root).
fn postgres_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_speaks_tls_to_a_database_whose_certificate_it_verifies() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let Some(cluster) = common::postgres::cluster() else {
        return;
    };
    // A CA, and a certificate it signed for the cluster's address.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let stranger_key = KeyPair::generate().unwrap();
    let mut stranger_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    stranger_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let stranger = stranger_params.self_signed(&stranger_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let owner = postgres_owner();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    private_file(&cert, &server.pem(), owner);
    private_file(&key, &server_key.serialize_pem(), owner);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let stranger_file = dir.path().join("stranger.pem");
    std::fs::write(&stranger_file, stranger.pem()).unwrap();

    // Turn TLS on in the running cluster.
    let admin_url = cluster.url("postgres");
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for statement in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let url = common::postgres::database(cluster, "over_tls").await;
    let ssl_sessions = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE ssl AND datname = 'over_tls'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    // Verified against its CA: it connects, encrypted, and serves.
    let verified = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    );
    let app = {
        let verified = verified.clone();
        common::spawn_app_with(Arc::new(tempfile::tempdir().unwrap()), move |c| {
            c.store = Some(verified)
        })
        .await
    };
    app.load_seed().await;
    assert!(
        ssl_sessions().await > 0,
        "the store's connections are encrypted"
    );
    app.stop().await;

    // Another CA's word is not taken.
    let refused = PostgresStore::connect(&PostgresConfig::new(format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        stranger_file.display()
    )))
    .await;
    assert!(
        refused.is_err(),
        "a certificate no trusted CA signed is refused"
    );

    // sslmode=disable speaks plain.
    let plain = PostgresStore::connect(&PostgresConfig::new(format!("{url}?sslmode=disable")))
        .await
        .expect("plain connections are still served");
    drop(plain);
}
