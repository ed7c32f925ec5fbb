//! One test per rule of the transport choice, driven like the driver drives
//! it: what happened in order, moves checked.

use super::*;
use Transport::*;

#[test]
fn websocket_is_tried_first() {
    assert_eq!(Chooser::default().current(), WebSocket);
}

#[test]
fn two_failed_upgrades_in_a_row_with_http_working_switch_to_the_fallback() {
    let mut choice = Chooser::default();
    assert_eq!(choice.upgrade_failed(true), Move::Stay);
    assert_eq!(choice.current(), WebSocket);
    assert_eq!(choice.upgrade_failed(true), Move::To(Sse));
    assert_eq!(choice.current(), Sse);
}

#[test]
fn a_failure_while_http_fails_too_breaks_the_run() {
    let mut choice = Chooser::default();
    choice.upgrade_failed(true);
    // The server was down: that says nothing about the upgrade.
    assert_eq!(choice.upgrade_failed(false), Move::Stay);
    assert_eq!(choice.upgrade_failed(true), Move::Stay);
    assert_eq!(choice.current(), WebSocket);
    assert_eq!(choice.upgrade_failed(true), Move::To(Sse));
}

#[test]
fn the_server_down_never_switches() {
    let mut choice = Chooser::default();
    for _ in 0..10 {
        assert_eq!(choice.upgrade_failed(false), Move::Stay);
    }
    assert_eq!(choice.current(), WebSocket);
}

#[test]
fn an_upgrade_that_works_between_failures_breaks_the_run() {
    let mut choice = Chooser::default();
    choice.upgrade_failed(true);
    assert_eq!(choice.upgrade_worked(), Move::Stay);
    assert_eq!(choice.upgrade_failed(true), Move::Stay);
    assert_eq!(choice.current(), WebSocket);
}

#[test]
fn on_the_fallback_a_websocket_that_opens_moves_back() {
    let mut choice = Chooser::default();
    choice.upgrade_failed(true);
    choice.upgrade_failed(true);
    assert_eq!(choice.upgrade_worked(), Move::To(WebSocket));
    assert_eq!(choice.current(), WebSocket);
    // And it takes two failures in a row again to fall back.
    assert_eq!(choice.upgrade_failed(true), Move::Stay);
    assert_eq!(choice.upgrade_failed(true), Move::To(Sse));
}

#[test]
fn background_tries_happen_on_the_fallback_only_and_back_off() {
    let mut choice = Chooser::default();
    assert_eq!(choice.next_probe_in_ms(), None);
    choice.upgrade_failed(true);
    choice.upgrade_failed(true);
    let waits: Vec<f64> = (0..5).filter_map(|_| choice.next_probe_in_ms()).collect();
    assert_eq!(waits, [5_000.0, 10_000.0, 20_000.0, 30_000.0, 30_000.0]);
    choice.upgrade_worked();
    assert_eq!(choice.next_probe_in_ms(), None);
}

#[test]
fn a_new_fallback_starts_its_background_tries_soon_again() {
    let mut choice = Chooser::default();
    choice.upgrade_failed(true);
    choice.upgrade_failed(true);
    choice.next_probe_in_ms();
    choice.next_probe_in_ms();
    choice.upgrade_worked();
    choice.upgrade_failed(true);
    choice.upgrade_failed(true);
    assert_eq!(choice.next_probe_in_ms(), Some(PROBE_FIRST_MS));
}

#[test]
fn asked_for_the_fallback_it_starts_there_and_stays() {
    assert!(Chooser::asks_for_fallback("?transport=sse"));
    assert!(Chooser::asks_for_fallback("?inspect&transport=sse"));
    assert!(!Chooser::asks_for_fallback("?transport=ssex"));
    assert!(!Chooser::asks_for_fallback(""));
    let mut choice = Chooser::new(true);
    assert_eq!(choice.current(), Sse);
    assert_eq!(choice.next_probe_in_ms(), None);
    assert_eq!(choice.upgrade_worked(), Move::Stay);
    assert_eq!(choice.current(), Sse);
    assert_eq!(choice.upgrade_failed(true), Move::Stay);
}
