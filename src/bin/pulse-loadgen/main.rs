//! `pulse-loadgen`: opens many WebSocket clients against a running Pulse server
//! and reports how it held up: how many clients connected, how many the server
//! closed (per close code), how many `tick`s it delivered per second and their
//! latency (the moment a frame arrived minus the envelope `timestamp`), and how
//! many sockets got (and answered) the server's WebSocket Pings.
//!
//! It speaks only the public protocol (`docs/PROTOCOL.md`) through the crate's
//! shared `protocol` types. Point it at a server on this machine (or one you
//! own). It stops by itself after the ramp-up plus `--duration`, closing every
//! socket with a normal close (1000); Ctrl-C ends the run early and still
//! prints the report. The exit status is 1 when no client connected at all.
//!
//! Stream mode: 2,000 clients, each subscribed to 10 of 100 symbols, for 60 s
//! (start the server with the same universe, `pulse --symbols 100`):
//!
//! ```text
//! cargo run --release --features loadgen --bin pulse-loadgen -- \
//!     --url ws://127.0.0.1:3000/ws --clients 2000 --symbols 10 --universe 100 --duration 60
//! ```
//!
//! Idle mode: 19,000 sockets that only answer Pings, over 2 source addresses,
//! for 2 minutes, with the report as one JSON line:
//!
//! ```text
//! cargo run --release --features loadgen --bin pulse-loadgen -- \
//!     --mode idle --clients 19000 --source-ips 2 --duration 120 --json
//! ```
//!
//! Storm mode: 10,000 clients on 2 symbols each; once all are subscribed and
//! ticks have flowed for `--settle` seconds, the load generator closes every
//! TCP connection at once; each client reconnects on PROTOCOL.md's jittered
//! backoff (retrying 1013s the same way) and resumes with `since`; offsets
//! are checked for `--verify` seconds after the last one is back:
//!
//! ```text
//! cargo run --release --features loadgen --bin pulse-loadgen -- \
//!     --mode storm --clients 10000 --symbols 2 --source-ips 4 --connect-rate 900 --json
//! ```
//!
//! Abuse mode: stream mode's subscribers while one guest floods `status` and
//! another posts chat at `--chat-rate` (see the `abuse` module).
//!
//! Doc mode: one shared note (`doc:notes`); 100 editors, each with its own
//! yrs replica, insert a letter at a random spot twice a second while 100
//! readers only apply, until 10,000 updates are acknowledged (see the `doc`
//! module):
//!
//! ```text
//! cargo run --release --features loadgen --bin pulse-loadgen -- \
//!     --mode doc --editors 100 --readers 100 --edit-rate 2 --total-updates 10000 --duration 120 --json
//! ```
//!
//! Every client needs one file descriptor: the open-file limit is raised to
//! the hard limit at start, with a warning when that is still too low.
//!
//! Code map: this file parses the flags, runs the mode and prints its report.
//! `args` holds the flags, `plan` the target and each client's channels,
//! `frames` the one reader of what the server sends (a text frame's messages
//! with batches unpacked, Pings, close codes), `net` connecting, sending,
//! closing and the guest login, `tasks` the paced launch and the waits,
//! `latency` the histograms and percentiles, `sse` the HTTP fallback client
//! (`--transport sse`, stream and idle modes). One module per mode: `stream`
//! (stream, idle and abuse's subscribers), `abuse` (its two abusers), `storm`
//! and `doc`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use args::{Args, Mode};
use plan::Plan;

mod abuse;
mod args;
mod doc;
mod frames;
mod latency;
mod net;
mod plan;
mod sse;
mod storm;
mod stream;
mod tasks;

/// Parses the flags, runs the mode and prints its report.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match Plan::from_args(&args).await {
        Ok(plan) => Arc::new(plan),
        Err(err) => {
            eprintln!("pulse-loadgen: {err}");
            return ExitCode::from(2);
        }
    };
    let stop = CancellationToken::new();
    let interrupted = Arc::new(AtomicBool::new(false));
    spawn_ctrl_c(stop.clone(), Arc::clone(&interrupted));
    if args.mode == Mode::Doc {
        return run_doc(&args, plan, stop).await;
    }
    net::raise_fd_limit(args.clients);
    if args.mode == Mode::Storm {
        return run_storm(&args, plan, stop).await;
    }
    run_stream(&args, plan, stop, interrupted).await
}

/// On Ctrl-C, marks the run interrupted and stops it.
fn spawn_ctrl_c(stop: CancellationToken, interrupted: Arc<AtomicBool>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupted.store(true, Relaxed);
            stop.cancel();
        }
    });
}

/// Runs stream, idle or abuse mode and prints its report (text, or one JSON
/// line with `--json`).
async fn run_stream(
    args: &Args,
    plan: Arc<Plan>,
    stop: CancellationToken,
    interrupted: Arc<AtomicBool>,
) -> ExitCode {
    let report = stream::run(args, plan, stop, interrupted).await;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    if report.connected == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs storm mode and prints its report.
async fn run_storm(args: &Args, plan: Arc<Plan>, stop: CancellationToken) -> ExitCode {
    let timings = storm::StormTimings {
        settle: Duration::from_secs(args.settle),
        verify: Duration::from_secs(args.verify),
        connect_rate: args.connect_rate,
    };
    let report = storm::run(plan, args.clients, timings, stop).await;
    print_report(&report, args.json);
    if report.subscribed_before_drop == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs doc mode and prints its report.
async fn run_doc(args: &Args, plan: Arc<Plan>, stop: CancellationToken) -> ExitCode {
    let doc_plan = match args.doc_plan() {
        Ok(doc_plan) => doc_plan,
        Err(err) => {
            eprintln!("pulse-loadgen: {err}");
            return ExitCode::from(2);
        }
    };
    net::raise_fd_limit(args.editors + args.readers + 1);
    let report = doc::run(plan, doc_plan, stop).await;
    print_report(&report, args.json);
    if report.subscribed == 0 || (args.editors > 0 && report.acked == 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a scenario's report: one JSON line with `--json`, else pretty JSON.
fn print_report(report: &impl Serialize, json: bool) {
    let printed = if json {
        serde_json::to_string(report)
    } else {
        serde_json::to_string_pretty(report)
    };
    println!(
        "{}",
        printed.unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    );
}
