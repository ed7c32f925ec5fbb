//! Unit tests of [`Outbox`](super::Outbox): conflation, budgets, batching, holds.

use super::*;

fn text(s: &str) -> Utf8Bytes {
    Utf8Bytes::from(s.to_owned())
}

async fn frames(outbox: &Outbox) -> Vec<String> {
    match outbox.next(usize::MAX).await {
        Next::Frames(frames, _) => frames.iter().map(|f| f.as_str().to_owned()).collect(),
        other => panic!("expected frames, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_come_out_in_order() {
    let outbox = Outbox::new(1024);
    outbox.push(text("a")).unwrap();
    outbox.push(text("b")).unwrap();
    assert_eq!(frames(&outbox).await, ["a", "b"]);
}

#[tokio::test]
async fn a_queued_tick_is_replaced_in_place_by_a_newer_one() {
    let outbox = Outbox::new(1024);
    let aapl: Arc<str> = "ticker:AAPL".into();
    let msft: Arc<str> = "ticker:MSFT".into();
    assert!(!outbox.push_tick(&aapl, text("aapl-1")).unwrap());
    outbox.push(text("chat")).unwrap();
    outbox.push_tick(&msft, text("msft-1")).unwrap();
    assert!(outbox.push_tick(&aapl, text("aapl-2")).unwrap());
    assert!(outbox.push_tick(&aapl, text("aapl-3")).unwrap());
    assert_eq!(frames(&outbox).await, ["aapl-3", "chat", "msft-1"]);
    // Once written, a tick is no longer replaceable: the next one queues.
    assert!(!outbox.push_tick(&aapl, text("aapl-4")).unwrap());
    assert_eq!(frames(&outbox).await, ["aapl-4"]);
}

#[tokio::test]
async fn ticks_stay_bounded_however_many_arrive() {
    let outbox = Outbox::new(64);
    let channels: Vec<Arc<str>> = (0..10).map(|n| format!("ticker:S{n}").into()).collect();
    for round in 0..10_000 {
        for channel in &channels {
            outbox
                .push_tick(channel, text(&format!("{channel}-{round}")))
                .unwrap();
        }
    }
    assert_eq!(outbox.queued().0, 10, "one queued tick per channel");
}

#[tokio::test]
async fn going_over_budget_makes_a_slow_consumer() {
    let outbox = Outbox::new(10);
    outbox.push(text("12345")).unwrap();
    outbox.push(text("12345")).unwrap();
    assert_eq!(outbox.push(text("x")), Err(PushError::SlowConsumer));
    outbox.overflowed().await;
    assert_eq!(outbox.push(text("y")), Err(PushError::Closed));
}

#[tokio::test]
async fn ticks_do_not_use_the_budget_of_other_frames() {
    let outbox = Outbox::new(10);
    let aapl: Arc<str> = "ticker:AAPL".into();
    outbox.push_tick(&aapl, text("a long tick frame")).unwrap();
    outbox.push(text("1234567890")).unwrap();
    assert_eq!(outbox.queued(), (2, 10));
    frames(&outbox).await;
    assert_eq!(outbox.queued(), (0, 0));
    outbox.push(text("1234567890")).unwrap();
}

#[tokio::test]
async fn subscribe_answers_do_not_use_the_budget() {
    let outbox = Outbox::new(10);
    for _ in 0..100 {
        outbox
            .push_answer(vec![text("a replayed message")])
            .unwrap();
    }
    assert_eq!(outbox.queued(), (100, 0));
    assert_eq!(outbox.queued_answers(), 1800);
    outbox.push(text("1234567890")).unwrap();
    assert_eq!(outbox.push(text("x")), Err(PushError::SlowConsumer));
}

/// `n` bytes of text.
fn sized(n: usize) -> Utf8Bytes {
    text(&"a".repeat(n))
}

/// Answers are taken up to their bound exactly; the next byte makes a
/// slow consumer (closed with 4008), and nothing more is queued.
#[tokio::test]
async fn answers_fit_up_to_their_bound_and_past_it_make_a_slow_consumer() {
    let outbox = Outbox::new(1024);
    let quarter = MAX_ANSWER_BYTES / 4;
    for _ in 0..3 {
        outbox.push_answer(vec![sized(quarter)]).unwrap();
    }
    outbox
        .push_answer(vec![sized(quarter - 10), sized(10)])
        .unwrap();
    assert_eq!(outbox.queued_answers(), MAX_ANSWER_BYTES);
    assert_eq!(
        outbox.push_answer(vec![sized(1)]),
        Err(PushError::SlowConsumer)
    );
    outbox.overflowed().await;
    assert_eq!(outbox.push(text("live")), Err(PushError::Closed));
    assert_eq!(outbox.queued(), (5, 0), "nothing more queued");
}

/// One answer always fits, however large (a full document's snapshot),
/// when no other is queued; another on top of it does not.
#[tokio::test]
async fn one_answer_always_fits_however_large() {
    let outbox = Outbox::new(1024);
    outbox
        .push_answer(vec![sized(MAX_ANSWER_BYTES + 1)])
        .unwrap();
    frames(&outbox).await;
    outbox
        .push_answer(vec![sized(MAX_ANSWER_BYTES - 1), sized(2)])
        .unwrap();
    assert_eq!(
        outbox.push_answer(vec![sized(1)]),
        Err(PushError::SlowConsumer)
    );
}

/// An answer and what follows it are queued whole or not at all: a
/// replay that would not fit leaves no lone `subscribed` behind.
#[tokio::test]
async fn an_answer_is_queued_whole_or_not_at_all() {
    let outbox = Outbox::new(1024);
    outbox.push_answer(vec![sized(100)]).unwrap();
    let answer = vec![text("subscribed"), sized(MAX_ANSWER_BYTES)];
    assert_eq!(outbox.push_answer(answer), Err(PushError::SlowConsumer));
    assert_eq!(outbox.queued(), (1, 0));
    assert_eq!(outbox.queued_answers(), 100);
}

/// Live traffic up to its budget and answers up to theirs do not count
/// against each other: a large answer never closes a connection whose
/// live queue is nearly full, and answers never shrink the live budget.
#[tokio::test]
async fn live_frames_and_answers_have_separate_bounds() {
    let outbox = Outbox::new(1000);
    outbox.push(sized(990)).unwrap();
    outbox
        .push_answer(vec![sized(MAX_ANSWER_BYTES / 2)])
        .unwrap();
    outbox
        .push_answer(vec![sized(MAX_ANSWER_BYTES / 2)])
        .unwrap();
    outbox.push(sized(10)).unwrap();
    assert_eq!(outbox.queued(), (4, 1000));
    assert_eq!(outbox.queued_answers(), MAX_ANSWER_BYTES);
    assert_eq!(outbox.push(sized(1)), Err(PushError::SlowConsumer));
}

/// Answers the writer took free their bound: a client that reads may
/// be answered any number of times.
#[tokio::test]
async fn written_answers_free_their_bound() {
    let outbox = Outbox::new(1024);
    for _ in 0..20 {
        outbox
            .push_answer(vec![sized(MAX_ANSWER_BYTES / 2), sized(10)])
            .unwrap();
        outbox
            .push_answer(vec![sized(MAX_ANSWER_BYTES / 2 - 10)])
            .unwrap();
        while outbox.queued().0 > 0 {
            frames(&outbox).await;
        }
        assert_eq!(outbox.queued_answers(), 0);
    }
}

#[tokio::test]
async fn written_frames_free_their_budget() {
    let outbox = Outbox::new(10);
    for _ in 0..100 {
        outbox.push(text("12345678")).unwrap();
        frames(&outbox).await;
    }
}

#[tokio::test]
async fn graceful_close_comes_after_queued_frames_and_close_now_drops_them() {
    let outbox = Outbox::new(1024);
    outbox.push(text("last words")).unwrap();
    outbox.close_after_queued(1001, "bye");
    assert_eq!(outbox.push(text("late")), Err(PushError::Closed));
    assert_eq!(frames(&outbox).await, ["last words"]);
    assert_eq!(outbox.next(1024).await, Next::Close(1001, "bye"));

    let outbox = Outbox::new(1024);
    outbox.push(text("never sent")).unwrap();
    outbox.close_now(4008, "slow");
    assert_eq!(outbox.next(1024).await, Next::Close(4008, "slow"));
}

#[tokio::test]
async fn a_batch_respects_its_byte_limit() {
    let outbox = Outbox::new(1024);
    for n in 0..5 {
        outbox.push(text(&format!("{n}{n}{n}"))).unwrap();
    }
    match outbox.next(7).await {
        Next::Frames(frames, _) => assert_eq!(frames.len(), 2),
        other => panic!("{other:?}"),
    }
}

/// `--write-delay-ms`: ticks wait for the delay, so those that arrive
/// meanwhile share their frame; anything else ends the wait at once.
#[tokio::test(start_paused = true)]
async fn held_ticks_wait_for_company_and_anything_else_goes_at_once() {
    use tokio::time::{timeout, Instant};
    let delay = Duration::from_millis(20);
    let outbox = Outbox::new(1024);
    let aapl: Arc<str> = "ticker:AAPL".into();
    let msft: Arc<str> = "ticker:MSFT".into();

    // Nothing queued: the hold waits for something.
    assert!(timeout(delay * 5, outbox.hold_ticks(delay)).await.is_err());

    outbox.push_tick(&aapl, text("aapl")).unwrap();
    let started = Instant::now();
    let joined = async {
        tokio::time::sleep(delay / 2).await;
        outbox.push_tick(&msft, text("msft")).unwrap();
    };
    tokio::join!(outbox.hold_ticks(delay), joined);
    assert_eq!(started.elapsed(), delay, "a tick waits the whole delay");
    assert_eq!(frames(&outbox).await, ["aapl", "msft"], "in one frame");

    // A chat message (an ack, an answer) pushed during the hold ends it.
    outbox.push_tick(&aapl, text("aapl-2")).unwrap();
    let started = Instant::now();
    let chat = async {
        tokio::time::sleep(delay / 4).await;
        outbox.push(text("chat")).unwrap();
    };
    tokio::join!(outbox.hold_ticks(delay), chat);
    assert_eq!(started.elapsed(), delay / 4);
    assert_eq!(frames(&outbox).await, ["aapl-2", "chat"]);

    // So does a Ping; and anything but a tick is never held.
    outbox.push_tick(&aapl, text("aapl-3")).unwrap();
    outbox.ping();
    let started = Instant::now();
    outbox.hold_ticks(delay).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(outbox.next(1024).await, Next::Ping);
    assert_eq!(frames(&outbox).await, ["aapl-3"]);
    outbox.push(text("ack")).unwrap();
    let started = Instant::now();
    outbox.hold_ticks(delay).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// Every frame taken comes with the moment it was queued, and the depth
/// counts what was taken and the live bytes left behind.
#[tokio::test]
async fn frames_taken_say_when_they_were_queued_and_how_deep_the_queue_was() {
    let outbox = Outbox::new(1024);
    let before = Instant::now();
    outbox.push(text("aaaa")).unwrap();
    outbox.push(text("bbbbbb")).unwrap();
    let Next::Frames(frames, drained) = outbox.next(4).await else {
        panic!("frames expected")
    };
    assert_eq!(frames.len(), 1, "4 bytes fit one frame");
    assert_eq!(drained.queued_at.len(), 1);
    assert!(drained.queued_at[0] >= before);
    assert_eq!(drained.depth, 4 + 6, "taken plus left behind");
    let Next::Frames(frames, drained) = outbox.next(1024).await else {
        panic!("frames expected")
    };
    assert_eq!(
        (frames.len(), drained.queued_at.len(), drained.depth),
        (1, 1, 6)
    );
}

/// A graceful close lets a pending write finish; closing at once gives it up
/// (the writer then goes on to the close frame).
#[tokio::test(start_paused = true)]
async fn only_closing_at_once_abandons_a_pending_write() {
    let outbox = Outbox::new(1024);
    outbox.close_after_queued(1001, "bye");
    let waited = tokio::time::timeout(std::time::Duration::from_millis(50), outbox.abandoned());
    assert!(waited.await.is_err(), "a graceful close abandons nothing");
    outbox.close_now(4008, "slow");
    outbox.abandoned().await;
    assert_eq!(outbox.next(usize::MAX).await, Next::Close(4008, "slow"));
}

/// A queued frame costs its handle and one word, no more: the hub writes
/// one into a different connection's queue for every subscriber of every
/// tick, so each byte here is paid in cache misses per delivered message
/// and in every connection's queue buffer (it was 80 bytes with its
/// `Instant` and `Option<FirstFrame>` inline: 3-5 % more CPU per message
/// at 5,000 clients than before the metrics, 1.1x the RSS per socket).
#[test]
fn a_queued_frame_is_its_handle_and_one_word() {
    assert_eq!(
        std::mem::size_of::<Queued>(),
        std::mem::size_of::<Utf8Bytes>() + std::mem::size_of::<u64>()
    );
}

/// Each timed answer's first frame carries its timing out, in order, however
/// the answers are split between takes; untimed and empty answers carry none;
/// a conflated tick is stamped with the time of the tick that replaced it.
#[tokio::test]
async fn timed_answers_and_conflated_ticks_keep_their_times() {
    let outbox = Outbox::new(1024);
    let since = Instant::now();
    outbox.time_answer(ChannelKind::Chat, since);
    outbox.push_answer(vec![]).unwrap();
    outbox.time_answer(ChannelKind::Ticker, since);
    outbox.push_answer(vec![text("t1"), text("t2")]).unwrap();
    outbox.push_answer(vec![text("u1")]).unwrap();
    outbox.time_answer(ChannelKind::User, since + Duration::from_millis(1));
    outbox.push_answer(vec![text("i1")]).unwrap();
    let aapl: Arc<str> = "ticker:AAPL".into();
    let (first, later) = (Instant::now(), Instant::now() + Duration::from_millis(7));
    outbox.push_tick_at(&aapl, text("tick-1"), first).unwrap();
    assert!(outbox.push_tick_at(&aapl, text("tick-2"), later).unwrap());

    let Next::Frames(frames, drained) = outbox.next(2).await else {
        panic!("frames expected")
    };
    assert_eq!(frames, [text("t1")]);
    assert_eq!(
        drained.firsts,
        [FirstFrame {
            kind: ChannelKind::Ticker,
            since
        }]
    );
    let Next::Frames(frames, drained) = outbox.next(usize::MAX).await else {
        panic!("frames expected")
    };
    assert_eq!(frames, [text("t2"), text("u1"), text("i1"), text("tick-2")]);
    let inbox = FirstFrame {
        kind: ChannelKind::User,
        since: since + Duration::from_millis(1),
    };
    assert_eq!(drained.firsts, [inbox]);
    assert_eq!(
        drained.queued_at[3], later,
        "the replacing tick's time, exactly"
    );
    assert!(drained.queued_at[..3].iter().all(|at| *at >= since));
}

/// Test-only views of the queue, used here and by the hub's tests.
impl Outbox {
    /// Frames and live bytes queued now (for tests).
    pub fn queued(&self) -> (usize, usize) {
        let state = self.lock();
        (state.frames.len(), state.bytes)
    }

    /// Bytes of answers queued now (for tests).
    pub fn queued_answers(&self) -> usize {
        self.lock().answer_bytes
    }

    /// [`Outbox::next_job`] with one frame given as a [`Next::Frames`] of
    /// one, so tests read every take alike.
    pub async fn next(&self, max_bytes: usize) -> Next {
        match self.next_job(max_bytes).await {
            Next::Frame(frame, taken) => {
                let drained = Drained {
                    queued_at: vec![taken.queued_at],
                    depth: taken.depth,
                    firsts: taken.first.into_iter().collect(),
                };
                Next::Frames(vec![frame], drained)
            }
            next => next,
        }
    }

    /// Everything queued now, parsed, `batch`es unpacked (for tests).
    pub async fn drain_messages(&self) -> Vec<crate::protocol::ServerMessage> {
        let mut messages = Vec::new();
        while self.queued().0 > 0 {
            let Next::Frames(frames, _) = self.next(usize::MAX).await else {
                panic!("frames queued, but next() answered otherwise")
            };
            for frame in frames {
                let envelope = crate::protocol::ServerEnvelope::from_json(&frame).unwrap();
                messages.extend(envelope.unpack().into_iter().map(|e| e.message));
            }
        }
        messages
    }
}
