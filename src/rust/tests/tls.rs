//! rediss:// against a real TLS redis-server with a self-signed certificate:
//! verified through the CA file in SSL_CERT_FILE, refused without it.

mod common;

use common::Server;
use redq::config::Config;
use redq::controller::Controller;
use std::process::{Command, Stdio};

#[test]
fn tls_connections_verify_the_server_certificate() {
    let dir = std::env::temp_dir().join(format!("redq-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be on PATH for the TLS test");
    assert!(ok.success());
    let port = Server::free_port();
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let args: Vec<String> = vec![
        "--port".into(), "0".into(), "--tls-port".into(), port.to_string(),
        "--tls-auth-clients".into(), "no".into(),
        "--tls-cert-file".into(), path(&cert), "--tls-key-file".into(), path(&key),
        "--tls-ca-cert-file".into(), path(&cert),
    ];
    let server = Server::launch(port, &args);
    let cfg = Config::new(&server.url_with("rediss"), "tls").unwrap();

    // an unknown certificate authority is refused
    std::env::set_var("SSL_CERT_FILE", dir.join("no-such-file.pem"));
    let e = Controller::open(&cfg).err().expect("connected without trusting the certificate");
    assert!(e.is_connection(), "{e:?}");

    std::env::set_var("SSL_CERT_FILE", &cert);
    let mut ctl = Controller::open(&cfg).unwrap();
    let pong: String = ctl.conn.run(|c| redis::cmd("PING").query(c)).unwrap();
    assert_eq!(pong, "PONG");
    std::env::remove_var("SSL_CERT_FILE");
    let _ = std::fs::remove_dir_all(&dir);
}
