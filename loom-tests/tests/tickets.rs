//! The lock-free ticket ring (`scheduler/src/tickets.rs`) under loom: the
//! models live next to the private ring; these tests run them.
#![cfg(loom)]

#[test]
fn tickets_push_overflow_races_with_steal() {
    stackless_scheduler::ticket_models::push_overflow_races_with_steal();
}

#[test]
fn tickets_two_thieves() {
    stackless_scheduler::ticket_models::two_thieves();
}
