//! The delivery contract of [`topicbus`] as a test suite.
//!
//! Each case is an `async fn` written against topicbus's public API only: it
//! makes buses on a network that a [`Harness`] provides, publishes,
//! subscribes, requests, shuts down, and asserts what the delivery contract
//! promises (docs/delivery.md in the topicbus repository). The same cases run
//! in topicbus's own tests on the memory transport, on librdkafka's mock
//! cluster and on Apache Kafka; a new transport runs them with one
//! [`suite!`] call in an integration test:
//!
//! ```no_run
//! // tests/conformance.rs of a crate that brings a transport
//! # mod hidden {
//! topicbus_conformance::suite! {
//!     // a module of tests named after the harness, one `#[test]` per case;
//!     // the attribute in brackets goes on every one of them
//!     memory [doc = "On the memory transport."] => topicbus_conformance::Memory::plain(),
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! `cargo test --test conformance` then runs `memory::payload_and_metadata_arrive_intact`
//! and the rest. `TOPICBUS_REPEAT=N` runs each case N times, on a fresh
//! harness each time, to shake out flakiness; a failure is never retried.
//! With `RUST_LOG` set, the first case installs a `tracing` subscriber.
//!
//! # Writing a harness
//!
//! Implement [`Harness`] (capabilities and a factory of networks) and
//! [`Network`] (a factory of [`topicbus::Bus`] instances that reach each
//! other). A networked harness scopes service and group names per network
//! ([`Network::scope`]) so that cases running at the same time, and earlier
//! runs on the same broker, share no consumer groups; every case uses
//! topics of its own. [`Memory`] is the reference implementation.
//!
//! A transport that lacks a capability says so through the flags of
//! [`Harness`] (`keeps_history`, `knows_responders`, ...): the cases that
//! need it then check the documented alternative (a request without a
//! responder times out instead of failing at once) or print why they do not
//! apply and pass. No case can be left out otherwise: a transport that fails
//! one breaks the contract users rely on.

#![warn(missing_docs)]

mod harness;

#[doc(hidden)]
pub mod cases;

pub use harness::{Harness, Memory, Network, Setup, HANG};

/// Runs the cases on a harness; called by the tests [`suite!`] expands to.
#[doc(hidden)]
pub fn __run<H, M, C, F>(name: &str, make: M, case: C)
where
    H: Harness,
    M: Fn() -> H,
    C: Fn(H) -> F,
    F: std::future::Future<Output = ()>,
{
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the case")
        .block_on(harness::run_case(name, make, case));
}

/// Instantiates every case once per harness, as `#[test]`s in a module
/// named after the harness.
///
/// Each entry is `name [attribute] => harness`: `name` names the module,
/// `attribute` goes on each of its tests (`doc = ".."`, or `ignore = ".."`
/// for a harness that needs a server the test command does not start), and
/// `harness` is an expression making a fresh [`Harness`], evaluated once per
/// case and repetition, with the names of the calling module in scope. Attributes written before the name (`#[cfg(..)]`)
/// go on the module.
///
/// See the [crate documentation](crate) for an example.
#[macro_export]
macro_rules! suite {
    ($($(#[$attr:meta])* $harness:ident [$each:meta] => $make:expr),* $(,)?) => {
        $( $crate::__instantiate!($(#[$attr])* $harness [$each] => $make); )*
    };
}

/// The case list, in one place.
#[doc(hidden)]
#[macro_export]
macro_rules! __instantiate {
    ($(#[$attr:meta])* $harness:ident [$each:meta] => $make:expr) => {
        $crate::__tests!($(#[$attr])* $harness [$each] => $make, [
            // publish / subscribe
            pubsub::payload_and_metadata_arrive_intact,
            pubsub::payloads_of_every_codec_survive_the_transport,
            pubsub::concurrent_publishers_lose_and_duplicate_nothing,
            pubsub::publish_batch_delivers_each_message_once,
            pubsub::publish_returns_the_id_and_keeps_a_callers_id,
            pubsub::context_tells_partition_and_offset,
            // consumer groups
            groups::two_groups_each_receive_everything,
            groups::instances_of_one_service_share_the_work,
            groups::members_of_an_explicit_group_share_the_work,
            groups::broadcast_reaches_every_instance,
            groups::departed_broadcast_subscriber_does_not_block_publishers,
            // order
            order::per_key_order_holds_with_competing_members,
            // failures, retries, dead letters
            failures::handler_error_is_redelivered_until_it_succeeds,
            failures::exhausted_retries_dead_letter_with_the_reason,
            failures::panicking_handler_is_contained_and_dead_lettered,
            failures::undecodable_message_is_dead_lettered_at_once,
            failures::hanging_handler_times_out_and_is_dead_lettered,
            // the shipped middleware
            middleware::dedup_layer_skips_ids_handled_in_its_window,
            middleware::throttle_layer_spaces_handler_calls,
            middleware::circuit_breaker_pauses_calls_while_the_dependency_fails,
            // request / reply
            request_reply::request_reply_round_trip_is_typed,
            request_reply::thousand_concurrent_requests_each_get_their_own_reply,
            request_reply::handler_error_comes_back_as_remote_error,
            request_reply::panicking_responder_comes_back_as_remote_error,
            request_reply::slow_responder_times_out_and_late_reply_is_dropped,
            request_reply::request_without_responders_fails_with_no_responders,
            request_reply::reply_to_outside_the_reply_topics_is_dead_lettered,
            raw_request::raw_request_gets_the_raw_reply_and_remote_errors,
            // shutdown
            shutdown::shutdown_drains_in_flight_handlers_then_rejects_work,
            shutdown::shutdown_hands_queued_work_to_remaining_members,
            shutdown::a_stopped_subscription_ends_alone,
            // start position, backpressure
            flow::start_from_earliest_replays_kept_history_to_a_new_group,
            flow::start_from_timestamp_replays_from_that_time,
            flow::slow_consumer_makes_publishers_wait,
            flow::cancelled_waiting_publish_does_not_wedge_shutdown,
            flow::concurrency_bounds_handlers_across_partitions,
            // records as other clients write them; groups that stay put
            wire::times_in_every_rfc3339_form_are_read_as_instants,
            wire::media_type_parameters_and_case_are_understood,
            wire::two_closure_handlers_each_see_every_message,
            wire::a_restarted_instance_joins_the_same_groups,
        ]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __tests {
    ($(#[$attr:meta])* $harness:ident [$each:meta] => $make:expr, [$($module:ident :: $case:ident),* $(,)?]) => {
        $(#[$attr])*
        mod $harness {
            // The harness expression is written in the caller's module.
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                #[$each]
                fn $case() {
                    $crate::__run(
                        concat!(stringify!($harness), "::", stringify!($case)),
                        || $make,
                        $crate::cases::$module::$case,
                    );
                }
            )*
        }
    };
}
