//! Stackless conformance scenarios that need no channel (STACKLESS.md §5 and
//! §8), each on a fresh one-worker scheduler, with the exact output order
//! Stackless 3.7.5 gives. Blocking without channels uses a one-shot event
//! built on the public park API.
//!
//! Out of scope for the Rust API, so not tested here: `schedule()`'s return
//! value (S10 beyond "returns at once"; `schedule()` returns nothing here),
//! `throw`/`raise_exception` (S36's throw parts), the error handler (S29),
//! `run(timeout)` preemption, `soft` and `totaltimeout` (S45–S47), `atomic`
//! (S48, S63), `switch_trap` (S62), `block_trap` (S44), schedule and channel
//! callbacks (S58, S59), threads' `thread_id`, `get_thread_info` and
//! thread death (S52's ids, S57), `bind`/unbind and the TypeError cases of
//! S60, `tempval`, pickling. Channel scenarios live in
//! `channels/tests/scenarios.rs`.

mod support;
use stackless_scheduler::park::{park, prepare_park, Unparker, Wake};
use stackless_scheduler::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use support::*;

// ----- harness -------------------------------------------------------------

/// `Ok(())` / `Err(Variant): message` of a tasklet operation.
fn res(r: Result<(), TaskletError>) -> String {
    match r {
        Ok(()) => "Ok".to_string(),
        Err(e) => format!("Err({e:?}): {e}"),
    }
}

/// A one-shot event on the public park API: `wait` blocks until `set`.
#[derive(Default)]
struct Event {
    state: Mutex<(bool, Vec<Unparker>)>,
}

impl Event {
    fn set(&self) {
        let waiters = {
            let mut s = self.state.lock().unwrap();
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        for w in waiters {
            w.unpark();
        }
    }

    fn wait(&self) -> Wake {
        let mut s = self.state.lock().unwrap();
        if s.0 {
            return Wake::Woken;
        }
        s.1.push(prepare_park());
        drop(s);
        park()
    }
}

// ----- creation, scheduling, queue order -------------------------------------

// S1: creation is FIFO; runcount counts main and the new tasklets.
#[test]
fn s01_creation_is_fifo() {
    let out = scenario(|log| {
        for n in ["A", "B", "C"] {
            let l = log.clone();
            spawn(move || l.say(format!("run {n}")));
        }
        log.say(format!("runcount {}", runcount()));
        run();
        log.say(format!("runcount {}", runcount()));
    });
    assert_eq!(out, ["runcount 4", "run A", "run B", "run C", "runcount 1"]);
}

// S2: schedule() round robin.
#[test]
fn s02_schedule_round_robin() {
    let out = scenario(|log| {
        for n in ["A", "B"] {
            let l = log.clone();
            spawn(move || {
                for i in 0..3 {
                    l.say(format!("{n} {i}"));
                    schedule();
                }
            });
        }
        run();
    });
    assert_eq!(out, ["A 0", "B 0", "A 1", "B 1", "A 2", "B 2"]);
}

// S3: main uses schedule() instead of run(): main stays in the ring.
#[test]
fn s03_main_schedule_keeps_main_in_the_ring() {
    let out = scenario(|log| {
        for n in ["A", "B"] {
            let l = log.clone();
            spawn(move || {
                l.say(format!("{n} 1"));
                schedule();
                l.say(format!("{n} 2"));
            });
        }
        schedule();
        log.say(format!("main back {}", runcount()));
        schedule();
        log.say(format!("again {}", runcount()));
    });
    assert_eq!(out, ["A 1", "B 1", "main back 3", "A 2", "B 2", "again 1"]);
}

// S4: a tasklet created by a running tasklet goes to the tail.
#[test]
fn s04_tasklet_spawned_by_a_tasklet_goes_to_the_tail() {
    let out = scenario(|log| {
        let l = log.clone();
        spawn(move || {
            l.say("A1");
            spawn(sayer(&l, "C"));
            schedule();
            l.say("A2");
        });
        spawn(sayer(log, "B"));
        run();
    });
    assert_eq!(out, ["A1", "B", "C", "A2"]);
}

// S5: runcount inside run() excludes the paused main.
#[test]
fn s05_runcount_inside_run_excludes_the_paused_main() {
    let out = scenario(|log| {
        let l = log.clone();
        spawn(move || {
            let m = main_tasklet();
            l.say(format!("{} {} {}", runcount(), m.paused(), m.scheduled()));
        });
        spawn(|| {});
        log.say(format!("{}", runcount()));
        run();
    });
    assert_eq!(out, ["3", "2 true false"]);
}

// S5 (variant): with schedule() instead of run(), main stays counted.
#[test]
fn s05_runcount_with_schedule_includes_main() {
    let out = scenario(|log| {
        let l = log.clone();
        spawn(move || {
            let m = main_tasklet();
            l.say(format!("{} {} {}", runcount(), m.paused(), m.scheduled()));
        });
        spawn(|| {});
        log.say(format!("{}", runcount()));
        schedule();
        run();
    });
    assert_eq!(out, ["3", "3 false true"]);
}

// S6: identity attributes (is_current, is_main) inside a tasklet and at top level.
#[test]
fn s06_identity_attributes() {
    let out = scenario(|log| {
        let l = log.clone();
        spawn(move || {
            let (c, m) = (current(), main_tasklet());
            l.say(format!(
                "{} {} {} {}",
                c.is_current(),
                c.is_main(),
                m.is_main(),
                m.is_current()
            ));
        });
        run();
        log.say(format!(
            "top {} {}",
            current() == main_tasklet(),
            current().is_main()
        ));
    });
    assert_eq!(out, ["true false true false", "top true true"]);
}

// S7: tasklet.run() of a scheduled tasklet rotates the ring.
#[test]
fn s07_run_of_scheduled_tasklet_rotates_the_ring() {
    let out = scenario(|log| {
        let t1 = spawn(sayer(log, "t1"));
        let t2 = spawn(sayer(log, "t2"));
        let _t3 = spawn(sayer(log, "t3"));
        t2.run().unwrap();
        log.say(format!("main {} {}", runcount(), t1.alive()));
        run();
    });
    assert_eq!(out, ["t2", "t3", "main 2 true", "t1"]);
}

// S8: switch(): the caller (main) is paused; main is revived when the queue drains.
#[test]
fn s08_switch_pauses_main_and_main_is_revived() {
    let out = scenario(|log| {
        let l = log.clone();
        let t = spawn(move || {
            let m = main_tasklet();
            l.say(format!("{} {} {}", m.paused(), m.scheduled(), runcount()));
        });
        t.switch().unwrap();
        log.say(format!("{} {}", main_tasklet().scheduled(), runcount()));
    });
    assert_eq!(out, ["true false 1", "true 1"]);
}

// S8 (variant): with runnable A and B queued before T, switch() gives T, A, B, then main.
#[test]
fn s08_switch_with_others_queued_runs_them_before_main() {
    let out = scenario(|log| {
        spawn(sayer(log, "A"));
        spawn(sayer(log, "B"));
        let t = spawn(sayer(log, "T"));
        t.switch().unwrap();
        log.say(format!(
            "main back {} {}",
            main_tasklet().scheduled(),
            runcount()
        ));
    });
    assert_eq!(out, ["T", "A", "B", "main back true 1"]);
}

// S10: schedule() with main alone (or a tasklet alone under run()) returns at once.
#[test]
fn s10_schedule_alone_returns_at_once() {
    let out = scenario(|log| {
        schedule();
        log.say(format!("main returned {}", runcount()));
        let l = log.clone();
        spawn(move || {
            l.say("T before");
            schedule();
            l.say(format!("T after {}", runcount()));
        });
        run();
        log.say("main end");
    });
    assert_eq!(
        out,
        ["main returned 1", "T before", "T after 1", "main end"]
    );
}

// S11b: the last runnable tasklet calls schedule_remove() under run():
// run() returns and the tasklet is paused.
#[test]
fn s11b_last_runnable_schedule_remove_makes_run_return() {
    let out = scenario(|log| {
        let l = log.clone();
        let t = spawn(move || {
            l.say("T before");
            schedule_remove();
            l.say("T after");
        });
        run();
        log.say(format!(
            "run returned: paused {} alive {} scheduled {} blocked {} runcount {}",
            t.paused(),
            t.alive(),
            t.scheduled(),
            t.blocked(),
            runcount()
        ));
        t.insert().unwrap();
        run();
        log.say(format!("end {}", t.alive()));
    });
    assert_eq!(
        out,
        [
            "T before",
            "run returned: paused true alive true scheduled false blocked false runcount 1",
            "T after",
            "end false",
        ]
    );
}

// §1.3: remove() pauses a runnable tasklet; insert() appends it at the tail;
// insert() of a scheduled tasklet changes nothing.
#[test]
fn s1_3_remove_and_insert_move_a_tasklet_to_the_tail() {
    let out = scenario(|log| {
        let a = spawn(sayer(log, "A"));
        let b = spawn(sayer(log, "B"));
        spawn(sayer(log, "C"));
        a.remove().unwrap();
        log.say(format!("A paused {} runcount {}", a.paused(), runcount()));
        a.insert().unwrap();
        b.insert().unwrap(); // already scheduled: stays where it is
        log.say(format!("runcount {}", runcount()));
        run();
    });
    assert_eq!(
        out,
        ["A paused true runcount 3", "runcount 4", "B", "C", "A"]
    );
}

// ----- kill --------------------------------------------------------------------

// S32: kill of a never-started tasklet: the body never runs; run() then fails Dead.
#[test]
fn s32_kill_of_a_never_started_tasklet() {
    let out = scenario(|log| {
        let l = log.clone();
        let t = spawn(move || {
            let _f = finally(&l, "finally ran");
            l.say("BODY RAN");
        });
        log.say(format!("kill {}", res(t.kill())));
        log.say(format!("{} {} {}", t.alive(), t.scheduled(), runcount()));
        log.say(format!("run {}", res(t.run())));
        log.say(format!("join {}", res(t.join())));
    });
    assert_eq!(
        out,
        [
            "kill Ok",
            "false false 1",
            "run Err(Dead): You cannot run an unbound(dead) tasklet",
            "join Ok",
        ]
    );
}

// S32 / §8 "Never set up": killing a merely bound tasklet does nothing; insert
// and run fail Dead, remove succeeds; it can still be set up and run.
#[test]
fn s32_kill_of_a_bound_tasklet_does_nothing() {
    let out = scenario(|log| {
        let t = Tasklet::new(sayer(log, "BODY RAN"));
        log.say(format!("kill {}", res(t.kill())));
        log.say(format!("{} {}", t.alive(), t.scheduled()));
        log.say(format!("insert {}", res(t.insert())));
        log.say(format!("run {}", res(t.run())));
        log.say(format!("remove {}", res(t.remove())));
        log.say(format!("setup {}", res(t.setup())));
        log.say(format!("{} {}", t.alive(), t.scheduled()));
        run();
        log.say(format!("alive {}", t.alive()));
    });
    assert_eq!(
        out,
        [
            "kill Ok",
            "false false",
            "insert Err(Dead): You cannot run an unbound(dead) tasklet",
            "run Err(Dead): You cannot run an unbound(dead) tasklet",
            "remove Ok",
            "setup Ok",
            "true true",
            "BODY RAN",
            "alive false",
        ]
    );
}

// S36: kill of a dead tasklet (finished, or killed already) does nothing.
#[test]
fn s36_kill_of_a_dead_tasklet_does_nothing() {
    let out = scenario(|log| {
        let t = spawn(sayer(log, "T ran"));
        run();
        log.say(format!(
            "kill finished {} alive {}",
            res(t.kill()),
            t.alive()
        ));
        let l = log.clone();
        let u = spawn(move || {
            let _f = finally(&l, "U finally");
            l.say("U1");
            schedule_remove();
            l.say("U2 (never)");
        });
        schedule();
        log.say(format!("kill paused {}", res(u.kill())));
        log.say(format!("kill killed {} alive {}", res(u.kill()), u.alive()));
        log.say(format!("join {}", res(u.join())));
    });
    assert_eq!(
        out,
        [
            "T ran",
            "kill finished Ok alive false",
            "U1",
            "U finally",
            "kill paused Ok",
            "kill killed Ok alive false",
            "join Ok",
        ]
    );
}

// §1.6 (S29c): kill of a tasklet in the middle of the ring rotates the ring
// to it, so the tasklets behind it run before the caller.
#[test]
fn s29c_kill_of_a_queued_tasklet_rotates_the_ring() {
    let out = scenario(|log| {
        let mut ts = Vec::new();
        for n in ["A", "B", "C"] {
            let l = log.clone();
            ts.push(spawn(move || {
                let _f = finally(&l, format!("{n} exit"));
                l.say(format!("{n} start"));
                schedule();
                l.say(format!("{n} end"));
            }));
        }
        schedule();
        log.say("main back");
        ts[1].kill().unwrap();
        log.say("main after kill");
        run();
        log.say("end");
    });
    assert_eq!(
        out,
        [
            "A start",
            "B start",
            "C start",
            "main back",
            "B exit",
            "C end",
            "C exit",
            "main after kill",
            "A end",
            "A exit",
            "end",
        ]
    );
}

// §1.6: a paused target is appended at the tail and switched to, so the
// caller runs right after it dies (before tasklets queued earlier).
#[test]
fn s1_6_kill_of_a_paused_tasklet_returns_before_others_run() {
    let out = scenario(|log| {
        let l = log.clone();
        let t = spawn(move || {
            let _f = finally(&l, "T exit");
            l.say("T1");
            schedule_remove();
            l.say("T2 (never)");
        });
        schedule();
        log.say("main back");
        spawn(sayer(log, "A"));
        t.kill().unwrap();
        log.say(format!("main after kill {} {}", t.alive(), t.scheduled()));
        run();
        log.say("end");
    });
    assert_eq!(
        out,
        [
            "T1",
            "main back",
            "T exit",
            "main after kill false false",
            "A",
            "end"
        ]
    );
}

// §1.6: a target that catches TaskletExit keeps living; kill() returns to
// the caller when the target next switches away.
#[test]
fn s1_6_target_catching_tasklet_exit_keeps_living() {
    let out = scenario(|log| {
        let l = log.clone();
        let t = spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(|| {
                l.say("T waits");
                schedule_remove();
            }));
            match r {
                Err(p) if p.is::<TaskletExit>() => l.say("T caught TaskletExit"),
                Err(_) => l.say("T caught another panic"),
                Ok(()) => l.say("T resumed without kill"),
            }
            schedule();
            l.say("T end");
        });
        schedule();
        log.say("main back");
        t.kill().unwrap();
        log.say(format!("kill returned {}", t.alive()));
        run();
        log.say(format!("join {}", res(t.join())));
    });
    assert_eq!(
        out,
        [
            "T waits",
            "main back",
            "T caught TaskletExit",
            "kill returned true",
            "T end",
            "join Ok",
        ]
    );
}

// §8 "Self": insert and run on the calling tasklet do nothing, remove fails
// Current, kill unwinds it at once.
#[test]
fn s8_self_insert_run_remove_kill() {
    let out = scenario(|log| {
        let l = log.clone();
        let t = spawn(move || {
            let _f = finally(&l, "T unwound");
            let me = current();
            l.say(format!("insert {}", res(me.insert())));
            l.say(format!("run {}", res(me.run())));
            l.say(format!("remove {}", res(me.remove())));
            l.say(format!("runcount {}", runcount()));
            let _ = me.kill();
            l.say("after self-kill (never)");
        });
        run();
        log.say(format!("T alive {} join {}", t.alive(), res(t.join())));
        let m = current();
        log.say(format!("main insert {}", res(m.insert())));
        log.say(format!("main run {}", res(m.run())));
        log.say(format!("main remove {}", res(m.remove())));
        log.say(format!("main runcount {}", runcount()));
    });
    assert_eq!(
        out,
        [
            "insert Ok",
            "run Ok",
            "remove Err(Current): The current tasklet cannot be removed.",
            "runcount 1",
            "T unwound",
            "T alive false join Ok",
            "main insert Ok",
            "main run Ok",
            "main remove Err(Current): The current tasklet cannot be removed.",
            "main runcount 1",
        ]
    );
}

// §1.6: main.kill() is not silently ignored: it unwinds main, so `enter`
// ends with TaskletExit (after shutting down).
#[test]
fn s1_6_self_kill_of_main_is_not_ignored() {
    let log = Log::default();
    let l = log.clone();
    with_timeout(20, move || {
        let r = catch_unwind(AssertUnwindSafe(|| {
            Scheduler::builder().workers(1).build().unwrap().enter(|| {
                l.say("main before");
                let _ = current().kill();
                l.say("main after (never)");
            })
        }));
        match r {
            Ok(()) => l.say("enter returned"),
            Err(p) if p.is::<TaskletExit>() => l.say("enter unwound with TaskletExit"),
            Err(_) => l.say("enter unwound with another panic"),
        }
    });
    assert_eq!(
        log.lines(),
        ["main before", "enter unwound with TaskletExit"]
    );
}

// ----- misuse errors (S60) and §8 lifecycle edges ---------------------------------

// S60: setup of an alive tasklet (fresh, paused, or main) fails with "tasklet is alive".
#[test]
fn s60_setup_of_an_alive_tasklet_fails_alive() {
    let out = scenario(|log| {
        let l = log.clone();
        let t = Tasklet::new(move || {
            l.say("T1");
            schedule_remove();
            l.say("T2");
        });
        log.say(format!("setup {}", res(t.setup())));
        log.say(format!("setup fresh {}", res(t.setup())));
        schedule();
        log.say(format!("setup paused {}", res(t.setup())));
        log.say(format!("setup main {}", res(main_tasklet().setup())));
        t.run().unwrap();
        log.say("end");
    });
    assert_eq!(
        out,
        [
            "setup Ok",
            "setup fresh Err(Alive): tasklet is alive",
            "T1",
            "setup paused Err(Alive): tasklet is alive",
            "setup main Err(Alive): tasklet is alive",
            "T2",
            "end",
        ]
    );
}

// S60: remove of the current tasklet fails with "The current tasklet cannot be removed."
#[test]
fn s60_remove_of_the_current_tasklet_fails_current() {
    let out = scenario(|log| {
        log.say(format!("main {}", res(current().remove())));
        let l = log.clone();
        spawn(move || l.say(format!("T {}", res(current().remove()))));
        run();
    });
    assert_eq!(
        out,
        [
            "main Err(Current): The current tasklet cannot be removed.",
            "T Err(Current): The current tasklet cannot be removed.",
        ]
    );
}

// S60 / §1.3: run, insert or switch of a dead tasklet fails with
// "You cannot run an unbound(dead) tasklet".
#[test]
fn s60_run_or_insert_of_a_dead_tasklet_fails_dead() {
    let out = scenario(|log| {
        let t = spawn(sayer(log, "T ran"));
        run();
        log.say(format!("run {}", res(t.run())));
        log.say(format!("insert {}", res(t.insert())));
        log.say(format!("switch {}", res(t.switch())));
        log.say(format!("remove {}", res(t.remove())));
    });
    assert_eq!(
        out,
        [
            "T ran",
            "run Err(Dead): You cannot run an unbound(dead) tasklet",
            "insert Err(Dead): You cannot run an unbound(dead) tasklet",
            "switch Err(Dead): You cannot run an unbound(dead) tasklet",
            "remove Ok",
        ]
    );
}

// §8 "Set-up after death": setup of a finished or killed tasklet fails
// with Unbound ("the tasklet was not bound to a function").
#[test]
fn s8_setup_after_death_fails_unbound() {
    let out = scenario(|log| {
        let finished = spawn(|| {});
        let killed_fresh = spawn(|| {});
        killed_fresh.kill().unwrap();
        let killed_started = spawn(schedule_remove);
        run();
        killed_started.kill().unwrap();
        for (name, t) in [
            ("finished", &finished),
            ("killed fresh", &killed_fresh),
            ("killed started", &killed_started),
        ] {
            log.say(format!(
                "{name}: alive {} setup {}",
                t.alive(),
                res(t.setup())
            ));
        }
    });
    assert_eq!(
        out,
        [
            "finished: alive false setup Err(Unbound): the tasklet was not bound to a function",
            "killed fresh: alive false setup Err(Unbound): the tasklet was not bound to a function",
            "killed started: alive false setup Err(Unbound): the tasklet was not bound to a function",
        ]
    );
}

// S60 / §1.3: insert, run or switch of a blocked tasklet fails with
// "You cannot run a blocked tasklet".
#[test]
fn s60_insert_run_switch_of_a_blocked_tasklet_fail_blocked() {
    let out = scenario(|log| {
        let ev = Arc::new(Event::default());
        let (e, l) = (ev.clone(), log.clone());
        let t = spawn(move || l.say(format!("T woke {:?}", e.wait())));
        run();
        log.say(format!(
            "alive {} scheduled {} blocked {} paused {}",
            t.alive(),
            t.scheduled(),
            t.blocked(),
            t.paused()
        ));
        log.say(format!("insert {}", res(t.insert())));
        log.say(format!("run {}", res(t.run())));
        log.say(format!("switch {}", res(t.switch())));
        ev.set();
        run();
    });
    assert_eq!(
        out,
        [
            "alive true scheduled true blocked true paused false",
            "insert Err(Blocked): You cannot run a blocked tasklet",
            "run Err(Blocked): You cannot run a blocked tasklet",
            "switch Err(Blocked): You cannot run a blocked tasklet",
            "T woke Woken",
        ]
    );
}

// S60 / §1.3: remove of a blocked tasklet fails with Blocked. Stackless's
// message for remove is "You cannot remove a blocked tasklet."; the Rust API
// has one `Blocked` variant for insert/run/switch/remove (so a match on it
// catches all of them) and it carries the run message.
#[test]
fn s60_remove_of_a_blocked_tasklet_fails_blocked() {
    let out = scenario(|log| {
        let ev = Arc::new(Event::default());
        let e = ev.clone();
        let t = spawn(move || {
            e.wait();
        });
        run();
        log.say(format!("remove {}", res(t.remove())));
        ev.set();
        run();
    });
    assert_eq!(
        out,
        ["remove Err(Blocked): You cannot run a blocked tasklet"]
    );
}

// §8 "A nice tasklet is blocked": alive, scheduled and blocked (not paused);
// insert/run/remove fail Blocked; run_nice() wakes those that were nice
// before it, in order, and one that is nice again waits for the next round.
#[test]
fn s8_a_nice_tasklet_is_blocked() {
    let out = scenario(|log| {
        let mut ts = Vec::new();
        for n in ["A", "B"] {
            let l = log.clone();
            ts.push(spawn(move || {
                for i in 1..=3 {
                    l.say(format!("{n}{i}"));
                    be_nice();
                }
            }));
        }
        run();
        let a = &ts[0];
        log.say(format!(
            "alive {} scheduled {} blocked {} paused {}",
            a.alive(),
            a.scheduled(),
            a.blocked(),
            a.paused()
        ));
        // §8 names the variant; the messages are checked by the S60 tests.
        log.say(format!("insert {:?}", a.insert()));
        log.say(format!("run {:?}", a.run()));
        log.say(format!("remove {:?}", a.remove()));
        for frame in 2..=3 {
            log.say(format!("frame {frame}: woke {}", run_nice()));
            run();
        }
        log.say(format!("last: woke {}", run_nice()));
        run();
        log.say(format!("end {} {}", ts[0].alive(), ts[1].alive()));
    });
    assert_eq!(
        out,
        [
            "A1",
            "B1",
            "alive true scheduled true blocked true paused false",
            "insert Err(Blocked)",
            "run Err(Blocked)",
            "remove Err(Blocked)",
            "frame 2: woke 2",
            "A2",
            "B2",
            "frame 3: woke 2",
            "A3",
            "B3",
            "last: woke 2",
            "end false false",
        ]
    );
}

// ----- run(): nesting, main's fallback --------------------------------------------

// §1.4: any tasklet may call run(); calls nest and the innermost returns first.
#[test]
fn s1_4_nested_run_returns_innermost_first() {
    let out = scenario(|log| {
        let l = log.clone();
        spawn(move || {
            l.say("T start");
            run();
            l.say("T run returned");
        });
        spawn(sayer(log, "U"));
        run();
        log.say("main run returned");
    });
    assert_eq!(out, ["T start", "U", "T run returned", "main run returned"]);
}

// §8 "Nested run": running a tasklet that sits in its own nested run()
// makes that run() return.
#[test]
fn s8_running_a_tasklet_inside_its_nested_run_makes_it_return() {
    let out = scenario(|log| {
        let l = log.clone();
        let t = spawn(move || {
            l.say("T start");
            run();
            l.say("T back");
        });
        let l = log.clone();
        spawn(move || {
            l.say(format!("U1 T paused {}", t.paused()));
            t.run().unwrap();
            l.say("U2");
        });
        run();
        log.say("main");
    });
    assert_eq!(out, ["T start", "U1 T paused true", "T back", "U2", "main"]);
}

// §8: schedule_remove() by main with nothing else runnable returns at once.
#[test]
fn s8_main_schedule_remove_alone_returns_at_once() {
    let out = scenario(|log| {
        schedule_remove();
        log.say(format!(
            "back {} {} {}",
            runcount(),
            main_tasklet().scheduled(),
            main_tasklet().paused()
        ));
    });
    assert_eq!(out, ["back 1 true false"]);
}

// §1.3 / §1.5: main's schedule_remove() with others runnable runs them; when
// the queue drains main is revived (it is the fallback watchdog).
#[test]
fn s8_main_schedule_remove_runs_the_others_then_main_is_revived() {
    let out = scenario(|log| {
        spawn(sayer(log, "A"));
        let l = log.clone();
        spawn(move || {
            let m = main_tasklet();
            l.say(format!(
                "B: main paused {} scheduled {}",
                m.paused(),
                m.scheduled()
            ));
        });
        schedule_remove();
        log.say(format!("main back {}", runcount()));
    });
    assert_eq!(
        out,
        ["A", "B: main paused true scheduled false", "main back 1"]
    );
}

// §8: main's schedule_remove() returns at once even when the last other
// tasklet has just blocked (here on a park-API event, not a channel).
#[test]
fn s8_main_schedule_remove_returns_when_the_last_other_tasklet_blocked() {
    let out = scenario(|log| {
        let ev = Arc::new(Event::default());
        let (e, l) = (ev.clone(), log.clone());
        let t = spawn(move || {
            l.say("T waits");
            l.say(format!("T woke {:?}", e.wait()));
        });
        schedule();
        schedule_remove();
        log.say(format!("main back, T blocked {}", t.blocked()));
        ev.set();
        run();
        log.say("end");
    });
    assert_eq!(
        out,
        [
            "T waits",
            "main back, T blocked true",
            "T woke Woken",
            "end"
        ]
    );
}

// S8 / §1.5: main switches to T and T blocks with nothing else runnable:
// main is revived, not a deadlock.
#[test]
fn s8_main_switch_then_target_blocks_revives_main() {
    let out = scenario(|log| {
        let ev = Arc::new(Event::default());
        let (e, l) = (ev.clone(), log.clone());
        let t = spawn(move || {
            l.say("T waits");
            l.say(format!("T woke {:?}", e.wait()));
        });
        t.switch().unwrap();
        log.say(format!("main revived, T blocked {}", t.blocked()));
        ev.set();
        run();
    });
    assert_eq!(
        out,
        ["T waits", "main revived, T blocked true", "T woke Woken"]
    );
}

// §1.5 rule 3 on the park API: main blocking with nothing that could ever
// wake it gets the deadlock answer; blocking while a tasklet can wake it does not.
#[test]
fn s1_5_main_blocking_alone_gets_deadlock() {
    let out = scenario(|log| {
        let ev = Arc::new(Event::default());
        log.say(format!("alone {:?}", ev.wait()));
        log.say(format!(
            "blocked {} runcount {}",
            current().blocked(),
            runcount()
        ));
        let ev = Arc::new(Event::default());
        let (e, l) = (ev.clone(), log.clone());
        spawn(move || {
            l.say("T sets");
            e.set();
        });
        log.say(format!("with T {:?}", ev.wait()));
    });
    assert_eq!(
        out,
        [
            "alone Deadlock",
            "blocked false runcount 1",
            "T sets",
            "with T Woken"
        ]
    );
}

// ----- threads (S52 adapted) --------------------------------------------------------

// S52 adapted: a thread of the scheduler that is no worker (spawn_thread)
// has its own main tasklet, which is current there, and its own runcount
// of 1; the main thread's runcount is unaffected.
#[test]
fn s52_a_thread_has_its_own_main_and_runcount() {
    let out = scenario(|log| {
        spawn(|| {});
        let outer_main = main_tasklet();
        let l = log.clone();
        let h = Scheduler::current().unwrap().spawn_thread(move || {
            let (m, c) = (main_tasklet(), current());
            l.say(format!(
                "thread: main is current {} is_main {} same as outer main {} runcount {}",
                m == c,
                c.is_main(),
                m == outer_main,
                runcount()
            ));
        });
        h.join().unwrap();
        log.say(format!("main runcount {}", runcount()));
        run();
    });
    assert_eq!(
        out,
        [
            "thread: main is current true is_main true same as outer main false runcount 1",
            "main runcount 2",
        ]
    );
}

// §8 with a kill: a nice tasklet that is killed leaves the nice queue at
// once (it unwinds before `kill` returns), so the next round wakes only the
// others, and a tasklet that is nice again after being woken is not woken
// twice by one round.
#[test]
fn s8_a_killed_nice_tasklet_leaves_the_round() {
    let out = scenario(|log| {
        let mut ts = Vec::new();
        for n in ["A", "B", "C"] {
            let l = log.clone();
            ts.push(spawn(move || {
                struct Bye(Log, &'static str);
                impl Drop for Bye {
                    fn drop(&mut self) {
                        self.0.say(format!("{} ends", self.1));
                    }
                }
                let _bye = Bye(l.clone(), n);
                for i in 1..=2 {
                    l.say(format!("{n}{i}"));
                    be_nice();
                }
            }));
        }
        run();
        log.say(format!("kill B {:?}", ts[1].kill()));
        log.say(format!("frame: woke {}", run_nice()));
        run();
        log.say(format!("last: woke {}", run_nice()));
        run();
        log.say(format!(
            "alive {} {} {}",
            ts[0].alive(),
            ts[1].alive(),
            ts[2].alive()
        ));
    });
    assert_eq!(
        out,
        [
            "A1",
            "B1",
            "C1",
            "B ends",
            "kill B Ok(())",
            "frame: woke 2",
            "A2",
            "C2",
            "last: woke 2",
            "A ends",
            "C ends",
            "alive false false false",
        ]
    );
}
