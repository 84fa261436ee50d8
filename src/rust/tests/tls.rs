//! rediss:// against a real TLS redis-server with a self-signed certificate:
//! verified through the CA file in SSL_CERT_FILE, refused without it.

mod common;

use redq::config::Config;
use redq::controller::Controller;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&cert)
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("rediss://127.0.0.1:{port}/0");
    let cfg = Config::new(&url, "tls").unwrap();

    // an unknown certificate authority is refused
    std::env::set_var("SSL_CERT_FILE", dir.join("no-such-file.pem"));
    let e = Controller::open(&cfg).err().expect("connected without trusting the certificate");
    assert!(e.is_connection(), "{e:?}");

    std::env::set_var("SSL_CERT_FILE", &cert);
    let mut ctl = Controller::open(&cfg).unwrap();
    let pong: String = ctl.conn.run(|c| redis::cmd("PING").query(c)).unwrap();
    assert_eq!(pong, "PONG");
    std::env::remove_var("SSL_CERT_FILE");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
