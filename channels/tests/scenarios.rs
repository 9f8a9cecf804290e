//! Stackless conformance scenarios with channels (STACKLESS.md §2 and §5),
//! each on a fresh one-worker scheduler, with the exact output order
//! Stackless 3.7.5 gives, through the `stackless` facade.
//!
//! Adapted to Rust: an uncaught exception is a panic that ends its tasklet
//! only (`join` reports it) instead of leaving `run()` (S28); Stackless's
//! three "main tasklet is … without a … available" / deadlock RuntimeErrors
//! are one `Deadlock` error; `StopIteration` is an exception sent with
//! `send_exception`; Stackless threads are plain OS threads (S53, S54).
//!
//! Out of scope for the Rust API, so not tested here: the `queue` and
//! `next`/`prev` attributes (S17's identity checks), `send_throw` and
//! tracebacks, the error handler (S29), `block_trap` (S44), `run(timeout)`
//! preemption, `soft`, `totaltimeout` and `atomic` (S45–S48, S53's atomic,
//! S63), the channel and schedule callbacks (S58, S59), `switch_trap` (S62),
//! threads' `thread_id`/`get_thread_info` (S52, S57), the exception "bomb"
//! quirk of S43, and S60's preference TypeError (a non-integer cannot reach
//! `Preference::from_int`).

#[path = "../../scheduler/tests/support/mod.rs"]
mod support;
use stackless::*;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use support::*;

use std::time::Duration;

// ----- harness -------------------------------------------------------------

/// A receiver tasklet body: says "`name` got `v`" (or the error).
fn receiver(log: &Log, c: &Channel<&'static str>, name: &str) -> impl FnOnce() + Send + 'static {
    let (l, c, name) = (log.clone(), c.clone(), name.to_string());
    move || match c.receive() {
        Ok(v) => l.say(format!("{name} got {v}")),
        Err(e) => l.say(format!("{name} got error {e:?}: {e}")),
    }
}

/// `Variant(value): message` of a send error.
fn send_err<T: std::fmt::Debug>(e: SendError<T>) -> String {
    let msg = e.to_string();
    match e {
        SendError::Closed(v) => format!("Closed({v:?}): {msg}"),
        SendError::Deadlock(v) => format!("Deadlock({v:?}): {msg}"),
    }
}

/// `Ok(v)` or `Err(Variant): message` of a receive.
fn recv<T: std::fmt::Debug>(r: Result<T, RecvError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e:?}): {e}"),
    }
}

// ----- run() and blocked tasklets ------------------------------------------------

// S11: run() returns when only blocked tasklets remain.
#[test]
fn s11_run_returns_when_only_blocked_tasklets_remain() {
    let out = scenario(|log| {
        let c = Channel::new();
        let r = spawn(receiver(log, &c, "R"));
        run();
        log.say(format!(
            "run returned {} {} {}",
            r.blocked(),
            c.balance(),
            runcount()
        ));
        c.send("x").unwrap();
        log.say("end");
    });
    assert_eq!(out, ["run returned true -1 1", "R got x", "end"]);
}

// ----- preference and balance ------------------------------------------------------

// S12: send to a waiting receiver, preference −1 (default): the receiver
// runs at once and the sender is moved behind X.
#[test]
fn s12_send_to_waiting_receiver_runs_the_receiver_first() {
    let out = scenario(|log| {
        let c = Channel::new();
        log.say(format!("preference {:?}", c.preference()));
        spawn(receiver(log, &c, "R"));
        run();
        spawn(sayer(log, "X"));
        c.send("v").unwrap();
        log.say("main after send");
        run();
    });
    assert_eq!(
        out,
        ["preference Receiver", "R got v", "X", "main after send"]
    );
}

fn s13(pref: Preference) -> Vec<String> {
    scenario(move |log| {
        let c = Channel::new();
        c.set_preference(pref);
        let r = spawn(receiver(log, &c, "R"));
        run();
        spawn(sayer(log, "X"));
        c.send("v").unwrap();
        log.say(format!(
            "main after send {} {} {}",
            runcount(),
            r.scheduled(),
            r.blocked()
        ));
        run();
    })
}

// S13: send with preference 0: the sender keeps running; the receiver is
// appended at the tail (behind X).
#[test]
fn s13_send_with_preference_neither_keeps_the_sender_running() {
    assert_eq!(
        s13(Preference::Neither),
        ["main after send 3 true false", "X", "R got v"]
    );
}

// S13: send with preference 1: the same as preference 0.
#[test]
fn s13_send_with_preference_sender_keeps_the_sender_running() {
    assert_eq!(
        s13(Preference::Sender),
        ["main after send 3 true false", "X", "R got v"]
    );
}

// §2.2 table: receive from a waiting sender with preference 1 runs the
// sender at once (target, others…, caller); with the default the receiver
// goes on and the sender is appended at the tail.
#[test]
fn s13_receive_from_waiting_sender_follows_the_preference() {
    let out = scenario(|log| {
        for pref in [Preference::Sender, Preference::Receiver] {
            let c = Channel::new();
            c.set_preference(pref);
            let (l, c2) = (log.clone(), c.clone());
            spawn(move || {
                c2.send("v").unwrap();
                l.say("S resumed");
            });
            run();
            spawn(sayer(log, "X"));
            let v = c.receive().unwrap();
            log.say(format!("{pref:?}: main got {v}"));
            run();
        }
    });
    assert_eq!(
        out,
        [
            "S resumed",
            "X",
            "Sender: main got v",
            "Receiver: main got v",
            "X",
            "S resumed",
        ]
    );
}

// §2.2 table: schedule_all overrides the preference: others…, target, caller.
#[test]
fn s13_schedule_all_puts_target_and_caller_behind_the_others() {
    let out = scenario(|log| {
        let c = Channel::new();
        spawn(receiver(log, &c, "R"));
        run();
        spawn(sayer(log, "X"));
        c.set_schedule_all(true);
        c.send("v").unwrap();
        log.say("main after send");
        run();
    });
    assert_eq!(out, ["X", "R got v", "main after send"]);
}

// S17: balance sign and FIFO of receivers.
#[test]
fn s17_receivers_are_served_fifo_with_negative_balance() {
    let out = scenario(|log| {
        let c = Channel::new();
        for name in ["R1", "R2", "R3"] {
            let (l, c2, n) = (log.clone(), c.clone(), name);
            spawn(move || {
                l.say(n);
                let v = c2.receive().unwrap();
                l.say(format!("{n} got {v}"));
            });
        }
        run();
        log.say(format!("balance {}", c.balance()));
        for v in ["a", "b", "c"] {
            c.send(v).unwrap();
        }
        log.say(format!("balance {}", c.balance()));
    });
    assert_eq!(
        out,
        [
            "R1",
            "R2",
            "R3",
            "balance -3",
            "R1 got a",
            "R2 got b",
            "R3 got c",
            "balance 0",
        ]
    );
}

// S18: FIFO of senders; the receiver goes on and the senders resume in order on run().
#[test]
fn s18_senders_are_served_fifo_with_positive_balance() {
    let out = scenario(|log| {
        let c = Channel::new();
        for (name, v) in [("S1", 1), ("S2", 2), ("S3", 3)] {
            let (l, c2) = (log.clone(), c.clone());
            spawn(move || {
                c2.send(v).unwrap();
                l.say(format!("{name} resumed"));
            });
        }
        run();
        log.say(format!("balance {}", c.balance()));
        let got: Vec<i32> = (0..3).map(|_| c.receive().unwrap()).collect();
        log.say(format!("got {got:?} balance {}", c.balance()));
        run();
    });
    assert_eq!(
        out,
        [
            "balance 3",
            "got [1, 2, 3] balance 0",
            "S1 resumed",
            "S2 resumed",
            "S3 resumed",
        ]
    );
}

// §2.1 / §6.9 (S19): killing a waiter in the middle removes it and keeps the
// order of the rest; a later send never resumes the dead tasklet.
#[test]
fn s19_kill_of_a_middle_waiter_keeps_fifo() {
    let out = scenario(|log| {
        let c = Channel::new();
        let mut ts = Vec::new();
        for name in ["R1", "R2", "R3"] {
            let (l, c2) = (log.clone(), c.clone());
            ts.push(spawn(move || {
                let _f = finally(&l, format!("{name} exit"));
                let v: &str = c2.receive().unwrap();
                l.say(format!("{name} got {v}"));
            }));
        }
        run();
        ts[1].kill().unwrap();
        log.say(format!("balance {}", c.balance()));
        c.send("a").unwrap();
        c.send("b").unwrap();
        log.say(format!("balance {}", c.balance()));
    });
    assert_eq!(
        out,
        [
            "R2 exit",
            "balance -2",
            "R1 got a",
            "R1 exit",
            "R3 got b",
            "R3 exit",
            "balance 0",
        ]
    );
}

// ----- close, iteration, exceptions ---------------------------------------------------

// S20: close() on an empty channel: closed; send and receive fail Closed;
// the iterator ends at once.
#[test]
fn s20_close_on_an_empty_channel() {
    let out = scenario(|log| {
        let c: Channel<i32> = Channel::new();
        c.close();
        log.say(format!("closing {} closed {}", c.closing(), c.closed()));
        log.say(format!("send {}", send_err(c.send(1).unwrap_err())));
        log.say(format!("receive {}", recv(c.receive())));
        log.say(format!("next {:?}", c.iter().next()));
        log.say(format!("balance {}", c.balance()));
        c.open();
        log.say(format!(
            "open: closing {} closed {}",
            c.closing(),
            c.closed()
        ));
    });
    assert_eq!(
        out,
        [
            "closing true closed true",
            "send Closed(1): Send/receive operation on a closed channel",
            "receive Err(Closed): Send/receive operation on a closed channel",
            "next None",
            "balance 0",
            "open: closing false closed false",
        ]
    );
}

// §2.4: close() wakes nobody; queued waiters can still be served; closed
// once the balance drains; an operation that would block fails Closed.
#[test]
fn s20_close_wakes_nobody_and_queued_waiters_are_still_served() {
    let out = scenario(|log| {
        let c = Channel::new();
        let r = spawn(receiver(log, &c, "R"));
        run();
        c.close();
        log.say(format!(
            "R blocked {} balance {} closing {} closed {}",
            r.blocked(),
            c.balance(),
            c.closing(),
            c.closed()
        ));
        c.send("v").unwrap();
        log.say(format!("closed {}", c.closed()));
        log.say(format!("send {}", send_err(c.send("w").unwrap_err())));
        // Blocked senders on a closing channel are still served, and the
        // iterator ends once none is left.
        c.open();
        for v in ["a", "b"] {
            let c2 = c.clone();
            spawn(move || c2.send(v).unwrap());
        }
        run();
        c.close();
        let got: Vec<&str> = c.iter().collect();
        log.say(format!("iter {got:?} closed {}", c.closed()));
    });
    assert_eq!(
        out,
        [
            "R blocked true balance -1 closing true closed false",
            "R got v",
            "closed true",
            "send Closed(\"w\"): Send/receive operation on a closed channel",
            "iter [\"a\", \"b\"] closed true",
        ]
    );
}

// S23: an iterator over a channel closed by its producer stays blocked.
#[test]
fn s23_iterator_over_a_closing_channel_stays_blocked() {
    let out = scenario(|log| {
        let c = Channel::new();
        let (l, c2) = (log.clone(), c.clone());
        let consumer = spawn(move || {
            for v in c2.iter() {
                l.say(format!("got {v}"));
            }
            l.say("consumer done (never)");
        });
        let c2 = c.clone();
        spawn(move || {
            c2.send_sequence(0..3).unwrap();
            c2.close();
        });
        run();
        log.say(format!(
            "balance {} closing {} closed {} consumer alive {} blocked {}",
            c.balance(),
            c.closing(),
            c.closed(),
            consumer.alive(),
            consumer.blocked()
        ));
        consumer.kill().unwrap();
        log.say(format!(
            "killed: balance {} closed {}",
            c.balance(),
            c.closed()
        ));
    });
    assert_eq!(
        out,
        [
            "got 0",
            "got 1",
            "got 2",
            "balance -1 closing true closed false consumer alive true blocked true",
            "killed: balance 0 closed true",
        ]
    );
}

/// Stackless's `StopIteration`, sent as an exception.
#[derive(Debug)]
struct StopIteration;

impl std::fmt::Display for StopIteration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopIteration")
    }
}

impl std::error::Error for StopIteration {}

// S24: send_sequence returns the count; send_exception(StopIteration) ends
// the consumer's iteration.
#[test]
fn s24_send_sequence_and_stop_iteration_end_the_iteration() {
    let out = scenario(|log| {
        let c = Channel::new();
        let (l, c2) = (log.clone(), c.clone());
        spawn(move || {
            let got: Vec<&str> = c2.iter().collect();
            l.say(format!("{got:?}"));
        });
        let (l, c2) = (log.clone(), c.clone());
        spawn(move || {
            let n = c2.send_sequence(["x", "y", "z"]).unwrap();
            l.say(format!("{n}"));
            l.say(format!(
                "send_exception {:?}",
                c2.send_exception(StopIteration)
            ));
        });
        run();
        log.say(format!("balance {}", c.balance()));
    });
    assert_eq!(
        out,
        [
            "3",
            "[\"x\", \"y\", \"z\"]",
            "send_exception Ok(())",
            "balance 0"
        ]
    );
}

// §2.3: send_exception reaches the receiver as RecvError::Exception; it
// blocks like send (main alone: Deadlock, balance unchanged).
#[test]
fn s24_send_exception_reaches_the_receiver() {
    let out = scenario(|log| {
        let c: Channel<i32> = Channel::new();
        let (l, c2) = (log.clone(), c.clone());
        spawn(move || match c2.receive() {
            Err(RecvError::Exception(e)) => {
                let stop = e.downcast_ref::<StopIteration>().is_some();
                l.say(format!("R got exception {e} (StopIteration: {stop})"));
            }
            other => l.say(format!("R got {}", recv(other))),
        });
        run();
        log.say(format!(
            "send_exception {:?}",
            c.send_exception(StopIteration)
        ));
        let r = c.send_exception("boom");
        log.say(format!(
            "alone: {} balance {}",
            send_err(r.unwrap_err()),
            c.balance()
        ));
    });
    assert_eq!(
        out,
        [
            "R got exception StopIteration (StopIteration: true)",
            "send_exception Ok(())",
            "alone: Deadlock(()): Deadlock: the last runnable tasklet cannot be blocked. balance 0",
        ]
    );
}

// ----- panics (S28 adapted) ----------------------------------------------------------

// S28 adapted: a panicking tasklet ends alone; run() goes on, the others
// stay scheduled or blocked, and join reports Panicked.
#[test]
fn s28_a_panicking_tasklet_ends_alone() {
    let out = scenario(|log| {
        let c = Channel::new();
        let r = spawn(receiver(log, &c, "R"));
        let l2 = log.clone();
        let lp = spawn(move || {
            l2.say("loop step");
            schedule();
            l2.say("loop step2");
        });
        let b = spawn(|| panic!("bar"));
        run();
        log.say(format!(
            "run returned: R blocked {} balance {} runcount {}",
            r.blocked(),
            c.balance(),
            runcount()
        ));
        match b.join() {
            Err(e @ TaskletError::Panicked(_)) => {
                log.say(format!("B join Panicked {:?}: {e}", e.panic_message()))
            }
            other => log.say(format!("B join {other:?}")),
        }
        log.say(format!("L join {:?}", lp.join()));
        c.send("after panic").unwrap();
    });
    assert_eq!(
        out,
        [
            "loop step",
            "loop step2",
            "run returned: R blocked true balance -1 runcount 1",
            "B join Panicked Some(\"bar\"): tasklet panicked: bar",
            "L join Ok(())",
            "R got after panic",
        ]
    );
}

// ----- kill -------------------------------------------------------------------------

// S30: kill of a tasklet blocked on receive: it sees TaskletExit, its
// finally runs, the balance is corrected, and kill returns to main before
// the runnable A and B run.
#[test]
fn s30_kill_of_a_blocked_receiver_corrects_the_balance() {
    let out = scenario(|log| {
        let c: Channel<&str> = Channel::new();
        let (l, c2) = (log.clone(), c.clone());
        let r = spawn(move || {
            let _f = finally(&l, "R finally");
            match catch_unwind(AssertUnwindSafe(|| c2.receive())) {
                Ok(v) => l.say(format!("R got {}", recv(v))),
                Err(p) => {
                    if p.is::<TaskletExit>() {
                        l.say("R got TaskletExit");
                    }
                    resume_unwind(p);
                }
            }
        });
        run();
        log.say(format!("balance {}", c.balance()));
        spawn(sayer(log, "A"));
        spawn(sayer(log, "B"));
        r.kill().unwrap();
        log.say(format!(
            "after kill: alive {} blocked {} scheduled {} balance {}",
            r.alive(),
            r.blocked(),
            r.scheduled(),
            c.balance()
        ));
        run();
        log.say(format!("join {:?}", r.join()));
        // The dead receiver is never resumed by a later send.
        spawn(receiver(log, &c, "R2"));
        run();
        c.send("y").unwrap();
    });
    assert_eq!(
        out,
        [
            "balance -1",
            "R got TaskletExit",
            "R finally",
            "after kill: alive false blocked false scheduled false balance 0",
            "A",
            "B",
            "join Ok(())",
            "R2 got y",
        ]
    );
}

// §1.6: kill of a tasklet blocked on send gives its value up and corrects the balance.
#[test]
fn s30_kill_of_a_blocked_sender_corrects_the_balance() {
    let out = scenario(|log| {
        let c = Channel::new();
        let (l, c2) = (log.clone(), c.clone());
        let s = spawn(move || {
            let _f = finally(&l, "S finally");
            c2.send("lost").unwrap();
            l.say("S sent (never)");
        });
        run();
        log.say(format!("balance {}", c.balance()));
        s.kill().unwrap();
        log.say(format!(
            "balance {} try_receive {:?}",
            c.balance(),
            c.try_receive().is_ok()
        ));
    });
    assert_eq!(
        out,
        ["balance 1", "S finally", "balance 0 try_receive false"]
    );
}

// ----- deadlock (§1.5) ------------------------------------------------------------------

// S40: main blocks alone: receive and send fail with Deadlock, the balance
// is unchanged and the value comes back.
#[test]
fn s40_main_blocking_alone_is_a_deadlock() {
    let out = scenario(|log| {
        let c: Channel<i32> = Channel::new();
        log.say(format!("receive {}", recv(c.receive())));
        log.say(format!("balance {}", c.balance()));
        log.say(format!("send {}", send_err(c.send(1).unwrap_err())));
        log.say(format!("balance {} runcount {}", c.balance(), runcount()));
    });
    assert_eq!(
        out,
        [
            "receive Err(Deadlock): Deadlock: the last runnable tasklet cannot be blocked.",
            "balance 0",
            "send Deadlock(1): Deadlock: the last runnable tasklet cannot be blocked.",
            "balance 0 runcount 1",
        ]
    );
}

// §1.5 rule 3: a non-main tasklet that blocks while main is blocked on a
// channel gets the Deadlock error (undone); main stays blocked.
#[test]
fn s40_tasklet_blocking_while_main_is_blocked_is_a_deadlock() {
    let out = scenario(|log| {
        let c1: Channel<&str> = Channel::new();
        let c2: Channel<&str> = Channel::new();
        let (l, a, b) = (log.clone(), c1.clone(), c2.clone());
        spawn(move || {
            let r = b.receive();
            l.say(format!("T {} balance {}", recv(r), b.balance()));
            a.send("done").unwrap();
        });
        let v = c1.receive();
        log.say(format!("main got {}", recv(v)));
    });
    assert_eq!(
        out,
        [
            "T Err(Deadlock): Deadlock: the last runnable tasklet cannot be blocked. balance 0",
            "main got Ok(\"done\")",
        ]
    );
}

// §1.5 rule 4 adapted: main blocked receiving when the last other tasklet
// ends is woken with the error (Stackless: "the main tasklet is receiving
// without a sender available."; here the one Deadlock error).
#[test]
fn s40_main_blocked_when_the_last_tasklet_ends_gets_deadlock() {
    let out = scenario(|log| {
        let c: Channel<&str> = Channel::new();
        spawn(sayer(log, "T runs"));
        let r = c.receive();
        log.say(format!("main {} balance {}", recv(r), c.balance()));
        // §2.5 (issue #78): iterating in main ends when the producer ends
        // without sending StopIteration.
        let c2 = c.clone();
        spawn(move || {
            c2.send_sequence(["a", "b"]).unwrap();
        });
        let got: Vec<&str> = c.iter().collect();
        log.say(format!("iter {got:?} balance {}", c.balance()));
    });
    assert_eq!(
        out,
        [
            "T runs",
            "main Err(Deadlock): Deadlock: the last runnable tasklet cannot be blocked. balance 0",
            "iter [\"a\", \"b\"] balance 0",
        ]
    );
}

// S60: any integer preference is clamped to −1/0/1 (7 reads back as 1);
// the defaults are −1 and schedule_all off.
#[test]
fn s60_preference_is_clamped() {
    let out = scenario(|log| {
        let c: Channel<i32> = Channel::new();
        log.say(format!(
            "default {:?} schedule_all {}",
            c.preference(),
            c.schedule_all()
        ));
        for v in [7, 1, 0, -1, -5] {
            c.set_preference(Preference::from_int(v));
            log.say(format!("{v} -> {}", c.preference() as i8));
        }
    });
    assert_eq!(
        out,
        [
            "default Receiver schedule_all false",
            "7 -> 1",
            "1 -> 1",
            "0 -> 0",
            "-1 -> -1",
            "-5 -> -1",
        ]
    );
}

// ----- error messages ---------------------------------------------------------------

// Display of SendError/RecvError: Stackless's ValueError and RuntimeError messages.
#[test]
fn error_messages_are_stackless_messages() {
    with_timeout(20, || {
        let closed = "Send/receive operation on a closed channel";
        let deadlock = "Deadlock: the last runnable tasklet cannot be blocked.";
        assert_eq!(SendError::Closed(1).to_string(), closed);
        assert_eq!(SendError::Deadlock(1).to_string(), deadlock);
        assert_eq!(RecvError::Closed.to_string(), closed);
        assert_eq!(RecvError::Deadlock.to_string(), deadlock);
        assert_eq!(SendError::Deadlock(7).into_inner(), 7);
        let e = RecvError::Exception(Box::new(StopIteration));
        assert_eq!(e.to_string(), "StopIteration");
        assert!(std::error::Error::source(&e).is_some());
    });
}

// ----- try and timeout variants (undo) ----------------------------------------------

// try_send/try_receive never block: WouldBlock (value back, balance
// unchanged) without a waiter, Stackless rendezvous rules with one, Closed
// when closing.
#[test]
fn try_send_and_try_receive_never_block() {
    let out = scenario(|log| {
        let c: Channel<&str> = Channel::new();
        match c.try_send("a") {
            Err(TrySendError::WouldBlock(v)) => log.say(format!("try_send WouldBlock({v})")),
            other => log.say(format!("try_send {other:?}")),
        }
        log.say(format!(
            "try_receive {:?} balance {}",
            c.try_receive().err(),
            c.balance()
        ));
        spawn(receiver(log, &c, "R"));
        run();
        log.say(format!("try_send {:?}", c.try_send("b")));
        let c2 = c.clone();
        let l = log.clone();
        spawn(move || {
            c2.send("c").unwrap();
            l.say("S resumed");
        });
        run();
        log.say(format!("try_receive {:?}", c.try_receive().ok()));
        run();
        c.close();
        match c.try_send("d") {
            Err(e @ TrySendError::Closed(_)) => log.say(format!("closed try_send {e}")),
            other => log.say(format!("closed try_send {other:?}")),
        }
        log.say(format!("closed try_receive {:?}", c.try_receive().err()));
    });
    assert_eq!(
        out,
        [
            "try_send WouldBlock(a)",
            "try_receive Some(WouldBlock) balance 0",
            "R got b",
            "try_send Ok(())",
            "try_receive Some(\"c\")",
            "S resumed",
            "closed try_send Send/receive operation on a closed channel",
            "closed try_receive Some(Closed)",
        ]
    );
}

// send_timeout/receive_timeout: a timed-out operation is undone (balance
// restored, value returned); a timed wait is never a deadlock.
#[test]
fn send_and_receive_timeout_are_undone() {
    let out = scenario(|log| {
        let c: Channel<i32> = Channel::new();
        match c.send_timeout(7, Duration::from_millis(20)) {
            Err(SendTimeoutError::Timeout(v)) => {
                log.say(format!("send_timeout Timeout({v}) balance {}", c.balance()))
            }
            other => log.say(format!("send_timeout {other:?}")),
        }
        log.say(format!(
            "receive_timeout {:?} balance {}",
            c.receive_timeout(Duration::from_millis(20)).err(),
            c.balance()
        ));
        let (l, c2) = (log.clone(), c.clone());
        let t = spawn(move || {
            let r = c2.receive_timeout(Duration::from_millis(30));
            l.say(format!("T {:?} balance {}", r.err(), c2.balance()));
        });
        schedule();
        log.say(format!(
            "T waiting: blocked {} balance {}",
            t.blocked(),
            c.balance()
        ));
        run();
        let (l, c2) = (log.clone(), c.clone());
        spawn(move || {
            let r = c2.send_timeout(9, Duration::from_secs(10));
            l.say(format!("S {:?}", r.is_ok()));
        });
        schedule();
        log.say(format!(
            "main got {:?}",
            c.receive_timeout(Duration::from_secs(10)).ok()
        ));
        run();
        log.say(format!("balance {}", c.balance()));
    });
    assert_eq!(
        out,
        [
            "send_timeout Timeout(7) balance 0",
            "receive_timeout Some(Timeout) balance 0",
            "T waiting: blocked true balance -1",
            "T Some(Timeout) balance 0",
            "main got Some(9)",
            "S true",
            "balance 0",
        ]
    );
}

// ----- sleep (S51) ------------------------------------------------------------------

// S51: sleepers wake in deadline order (A sleeps 3, B 1, C 2 → B, C, A).
#[test]
fn s51_sleepers_wake_in_deadline_order() {
    let out = scenario(|log| {
        for (name, ticks) in [("A", 3u64), ("B", 1), ("C", 2)] {
            let l = log.clone();
            spawn(move || {
                sleep(Duration::from_millis(40 * ticks));
                l.say(format!("{name}@{ticks}"));
            });
        }
        run();
        log.say("run returned");
    });
    assert_eq!(out, ["B@1", "C@2", "A@3", "run returned"]);
}

// ----- threads (S53, S54 adapted) -----------------------------------------------------

// S53 adapted: a plain OS thread sending to a blocked tasklet never switches
// (it cannot run the receiver); the receiver is made runnable on its own
// worker and runs later, there.
#[test]
fn s53_a_thread_sending_to_a_tasklet_never_switches() {
    let out = scenario(|log| {
        let c = Channel::new();
        let r = spawn(receiver(log, &c, "R"));
        run();
        log.say(format!("balance {}", c.balance()));
        let (l, c2) = (log.clone(), c.clone());
        // Worker 0 (this thread) stays inside join: R cannot run meanwhile.
        std::thread::spawn(move || {
            let r = c2.send("hello");
            l.say(format!("thread send {r:?}"));
        })
        .join()
        .unwrap();
        log.say(format!(
            "after join: R blocked {} scheduled {} balance {}",
            r.blocked(),
            r.scheduled(),
            c.balance()
        ));
        run();
        log.say("end");
    });
    assert_eq!(
        out,
        [
            "balance -1",
            "thread send Ok(())",
            "after join: R blocked false scheduled true balance 0",
            "R got hello",
            "end",
        ]
    );
}

// S53 / §2.2 cross-thread rule: the woken receiver is appended to the tail
// of its own thread's run queue at once, so that thread's runcount counts it.
#[test]

fn s53_runcount_counts_a_tasklet_woken_by_another_thread() {
    let out = scenario(|log| {
        let c = Channel::new();
        spawn(receiver(log, &c, "R"));
        run();
        let c2 = c.clone();
        std::thread::spawn(move || c2.send("hello").unwrap())
            .join()
            .unwrap();
        log.say(format!("runcount {}", runcount()));
        run();
    });
    assert_eq!(out, ["runcount 2", "R got hello"]);
}

// S54 adapted: main blocking on a receive while a thread of the scheduler
// (spawn_thread) will send is not a deadlock.
#[test]
fn s54_blocking_while_a_thread_will_send_is_not_a_deadlock() {
    let out = scenario(|log| {
        let c = Channel::new();
        let c2 = c.clone();
        let sched = Scheduler::current().unwrap();
        let h = sched.spawn_thread(move || {
            // Send only once main is blocked (balance −1): no timing involved.
            while c2.balance() != -1 {
                std::thread::yield_now();
            }
            c2.send("from other thread")
        });
        log.say(format!("main got {}", recv(c.receive())));
        log.say(format!(
            "thread send {:?} balance {}",
            h.join().unwrap(),
            c.balance()
        ));
    });
    assert_eq!(
        out,
        [
            "main got Ok(\"from other thread\")",
            "thread send Ok(()) balance 0"
        ]
    );
}
