//! The transport-agnostic conformance suite: the delivery contract of
//! docs/delivery.md, proven through the public API only.
//!
//! Every case is an `async fn case<H: Harness>(harness: H)` in one of the
//! modules below. The [`conformance!`] invocation at the bottom instantiates
//! each case once per harness, so the test names read
//! `memory::two_groups_each_receive_everything`,
//! `memory_codec::two_groups_each_receive_everything`, ... A new transport
//! runs the same cases by adding one line there and one [`harness::Harness`]
//! implementation.
//!
//! `TOPICBUS_REPEAT=N` runs each case N times (a fresh harness and network
//! each time) to shake out flakiness; a failure is never retried.
//!
//! ```text
//! cargo test --test conformance
//! TOPICBUS_REPEAT=20 cargo test --test conformance -- memory_codec::
//! ```

#[path = "conformance/harness.rs"]
mod harness;
#[cfg(feature = "kafka")]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

#[path = "conformance/failures.rs"]
mod failures;
#[path = "conformance/flow.rs"]
mod flow;
#[path = "conformance/groups.rs"]
mod groups;
#[path = "conformance/order.rs"]
mod order;
#[path = "conformance/pubsub.rs"]
mod pubsub;
#[path = "conformance/raw_request.rs"]
mod raw_request;
#[path = "conformance/request_reply.rs"]
mod request_reply;
#[path = "conformance/shutdown.rs"]
mod shutdown;
#[path = "conformance/wire.rs"]
mod wire;

/// Instantiates every case of `[module::case, ...]` as a test in a module
/// named after the harness.
macro_rules! instantiate {
    ($(#[$attr:meta])* $harness:ident [$each:meta] => $make:expr, [$($module:ident :: $case:ident),* $(,)?]) => {
        $(#[$attr])*
        mod $harness {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[$each]
                async fn $case() {
                    crate::harness::run_case(
                        concat!(stringify!($harness), "::", stringify!($case)),
                        || $make,
                        crate::$module::$case,
                    )
                    .await;
                }
            )*
        }
    };
}

/// Every case on every harness: the cross product of the two lists.
macro_rules! conformance {
    (harnesses { $($(#[$attr:meta])* $harness:ident [$each:meta] => $make:expr),* $(,)? } cases $cases:tt) => {
        $( instantiate!($(#[$attr])* $harness [$each] => $make, $cases); )*
    };
}

conformance! {
    harnesses {
        // `[..]` is an attribute put on each of the harness's tests.
        memory [doc = "On the memory transport."] => crate::harness::Memory::plain(),
        memory_codec [doc = "On the memory transport, every payload through its codec."]
            => crate::harness::Memory::codec(),
        #[cfg(feature = "kafka")]
        kafka_mock [doc = "On Kafka: librdkafka's in-process mock cluster."]
            => crate::harness::Kafka::mock(),
        #[cfg(feature = "kafka")]
        kafka_broker [ignore = "needs a broker: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
            => crate::harness::Kafka::broker(),
    }
    cases [
        // publish / subscribe
        pubsub::payload_and_metadata_arrive_intact,
        pubsub::payloads_of_every_codec_survive_the_transport,
        pubsub::concurrent_publishers_lose_and_duplicate_nothing,
        pubsub::publish_batch_delivers_each_message_once,
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
    ]
}
