//! The flags as an operator writes them: defaults, overrides, refusals.

use super::*;

#[test]
fn flags_parse_with_their_defaults_and_overrides() {
    let config = Config::try_parse_from(["pulse"]).unwrap();
    assert_eq!(config.heartbeat_ms, 15_000);
    assert!(config.allowed_origins.is_empty());
    let config = Config::try_parse_from([
        "pulse",
        "--addr",
        "0.0.0.0:8080",
        "--allowed-origins",
        "http://a.test,https://b.test",
        "--heartbeat-ms",
        "500",
    ])
    .unwrap();
    assert_eq!(config.addr.port(), 8080);
    assert_eq!(config.allowed_origins, ["http://a.test", "https://b.test"]);
    assert_eq!(config.heartbeat(), Duration::from_millis(500));
}

#[test]
fn bad_values_are_refused_with_a_message() {
    assert!(Config::try_parse_from(["pulse", "--addr", "nowhere"]).is_err());
    assert!(Config::try_parse_from(["pulse", "--heartbeat-ms", "0"]).is_err());
    assert!(Config::try_parse_from(["pulse", "--symbols", "AAPL,not a symbol"]).is_err());
    assert!(Config::try_parse_from(["pulse", "--tick-rate", "-1"]).is_err());
    assert!(Config::try_parse_from(["pulse", "--tick-rate", "NaN"]).is_err());
    assert!(Config::try_parse_from(["pulse", "--max-upgrades-per-ip", "0"]).is_err());
}

#[test]
fn the_heartbeat_is_bounded_at_ten_minutes() {
    let at = MAX_HEARTBEAT_MS.to_string();
    assert!(Config::try_parse_from(["pulse", "--heartbeat-ms", &at]).is_ok());
    let past = (MAX_HEARTBEAT_MS + 1).to_string();
    assert!(Config::try_parse_from(["pulse", "--heartbeat-ms", &past]).is_err());
    assert!(Config::try_parse_from(["pulse", "--heartbeat-ms", &u64::MAX.to_string()]).is_err());
}

#[test]
fn empty_or_short_secrets_and_admin_keys_are_refused() {
    let check = |flags: &[&str]| {
        let mut args = vec!["pulse"];
        args.extend_from_slice(flags);
        Config::try_parse_from(args).unwrap().validate()
    };
    assert_eq!(check(&[]), Ok(()));
    assert_eq!(
        check(&["--jwt-secret", ""]),
        Err(ConfigError::ShortSecret(0))
    );
    let short = "s".repeat(MIN_SECRET_BYTES - 1);
    assert_eq!(
        check(&["--jwt-secret", &short]),
        Err(ConfigError::ShortSecret(MIN_SECRET_BYTES - 1))
    );
    let enough = "s".repeat(MIN_SECRET_BYTES);
    assert_eq!(check(&["--jwt-secret", &enough]), Ok(()));
    assert_eq!(
        check(&["--admin-key", ""]),
        Err(ConfigError::ShortAdminKey(0))
    );
    let short = "k".repeat(MIN_ADMIN_KEY_CHARS - 1);
    assert!(check(&["--admin-key", &short]).is_err());
    let enough = "k".repeat(MIN_ADMIN_KEY_CHARS);
    assert_eq!(check(&["--admin-key", &enough]), Ok(()));
}

#[test]
fn tls_needs_both_files_or_neither() {
    let check = |flags: &[&str]| {
        let mut args = vec!["pulse"];
        args.extend_from_slice(flags);
        Config::try_parse_from(args).unwrap().validate()
    };
    assert_eq!(check(&[]), Ok(()));
    assert_eq!(
        check(&["--tls-cert", "c.pem"]),
        Err(ConfigError::TlsHalfConfigured)
    );
    assert_eq!(
        check(&["--tls-key", "k.pem"]),
        Err(ConfigError::TlsHalfConfigured)
    );
    assert_eq!(
        check(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]),
        Ok(())
    );
    let config = Config::try_parse_from(["pulse"]).unwrap();
    assert_eq!(config.tls_handshake_timeout(), Duration::from_secs(10));
    assert!(config.tls_files().is_none());
    assert!(Config::try_parse_from(["pulse", "--tls-handshake-timeout-secs", "0"]).is_err());
}

#[test]
fn identity_flags_have_the_documented_defaults() {
    let config = Config::try_parse_from(["pulse"]).unwrap();
    assert!(config.guest_login);
    assert_eq!(config.presence_grace_ms, 5_000);
    assert!(config.jwt_secret.is_none());
    let config =
        Config::try_parse_from(["pulse", "--guest-login", "false", "--jwt-secret", "s"]).unwrap();
    assert!(!config.guest_login);
    assert_eq!(config.jwt_secret.as_deref(), Some("s"));
    assert_eq!(config.max_upgrades_per_ip, None);
    assert_eq!(config.max_upgrades_per_sec, None);
}

#[test]
fn the_upgrade_ceiling_may_be_set_above_a_thousand() {
    let config = Config::try_parse_from(["pulse", "--max-upgrades-per-sec", "20000"]).unwrap();
    assert_eq!(config.max_upgrades_per_sec, Some(20_000.0));
    assert!(Config::try_parse_from(["pulse", "--max-upgrades-per-sec", "0"]).is_err());
    assert!(Config::try_parse_from(["pulse", "--max-upgrades-per-sec", "inf"]).is_err());
}

#[test]
fn the_default_symbols_are_the_default_watchlist() {
    let config = Config::try_parse_from(["pulse"]).unwrap();
    assert_eq!(config.symbols.0, crate::client::DEFAULT_WATCHLIST);
}

#[test]
fn symbols_are_a_list_or_a_count() {
    let config = Config::try_parse_from(["pulse"]).unwrap();
    assert_eq!(config.symbols.0.len(), 12);
    assert!(config.symbols.0.contains(&"BRK.B".to_owned()));
    let config = Config::try_parse_from(["pulse", "--symbols", "3", "--tick-rate", "0"]).unwrap();
    assert_eq!(config.symbols.0, ["SYM0", "SYM1", "SYM2"]);
    assert_eq!(config.tick_rate, 0.0);
    let config = Config::try_parse_from(["pulse", "--symbols", "aapl, msft,AAPL"]).unwrap();
    assert_eq!(config.symbols.0, ["AAPL", "MSFT"]);
}
