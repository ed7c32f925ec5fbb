//! The real binary and the site bundle beside it (issue 23): a bundle of
//! another build is refused at start with the command that fixes it, or
//! served with a loud warning under `--allow-stale-bundle`; a bundle of this
//! build is served, and `welcome.build` names the build.

mod common;

use common::process::Pulse;
use common::{temp_db, Client};
use pulse::build_id::{BUILD_ID, PREFIXES};
use pulse::protocol::ServerMessage;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A site root whose `pkg/pulse.wasm` holds `id` among other bytes.
fn site_with(id: &str) -> PathBuf {
    let db = PathBuf::from(temp_db());
    let site = db.parent().unwrap().join("site");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    let wasm = [b"\0asm\x01\0\0\0 data ".as_slice(), id.as_bytes(), b" more"].concat();
    std::fs::write(site.join("pkg/pulse.wasm"), wasm).unwrap();
    site
}

/// This build's sources built as the other kind: what `target/site` holds
/// after `cargo leptos watch` under a release binary, or the other way round.
fn other_kind() -> String {
    let hash = &BUILD_ID[BUILD_ID.len() - 16..];
    if BUILD_ID.starts_with(PREFIXES[0]) {
        format!("{}{hash}", PREFIXES[1])
    } else {
        format!("{}{hash}", PREFIXES[0])
    }
}

#[test]
fn a_bundle_of_another_build_is_refused_at_start_with_the_fix() {
    let site = site_with(&other_kind());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--db",
            &temp_db(),
            "--tick-rate",
            "0",
        ])
        .env("NO_COLOR", "1")
        .env("LEPTOS_SITE_ROOT", &site)
        .env_remove("PULSE_ALLOW_STALE_BUNDLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Not a timing assertion: a server that starts instead is killed, so
    // the test fails rather than hangs.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("pulse started on a bundle of another build");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("is not this server's build"), "{log}");
    assert!(log.contains(&other_kind()), "{log}");
    assert!(log.contains("cargo leptos"), "{log}");
    assert!(log.contains("--allow-stale-bundle"), "{log}");
}

#[test]
fn with_the_flag_a_bundle_of_another_build_is_served_with_a_warning() {
    let site = site_with("pulse-release-0000000000000000");
    let site = site.display().to_string();
    let pulse = Pulse::start(
        &temp_db(),
        &["--allow-stale-bundle"],
        &[("LEPTOS_SITE_ROOT", &site)],
    );
    let log = pulse.log().join("\n");
    assert!(log.contains("STALE SITE BUNDLE"), "{log}");
}

#[tokio::test]
async fn a_bundle_of_this_build_is_served_and_welcome_names_the_build() {
    let site = site_with(BUILD_ID).display().to_string();
    let pulse = Pulse::start(&temp_db(), &[], &[("LEPTOS_SITE_ROOT", &site)]);
    assert!(!pulse.log().join("\n").contains("STALE"));
    let mut client = Client::connect_to(pulse.addr, None).await;
    client
        .send(&json!({"type": "hello", "data": {}}).to_string())
        .await;
    match client.recv().await.message {
        ServerMessage::Welcome(welcome) => assert_eq!(welcome.build, BUILD_ID),
        other => panic!("expected welcome, got {other:?}"),
    }
}
