//! The conformance kit (crate `topicbus-conformance`, in conformance/) run
//! on topicbus's own transports: the delivery contract of docs/delivery.md,
//! proven through the public API only, once per harness. Test names read
//! `memory::two_groups_each_receive_everything`,
//! `kafka_mock::two_groups_each_receive_everything`, ...
//!
//! `TOPICBUS_REPEAT=N` runs each case N times (a fresh harness and network
//! each time) to shake out flakiness; a failure is never retried.
//!
//! ```text
//! cargo test --test conformance
//! TOPICBUS_REPEAT=20 cargo test --test conformance -- memory_codec::
//! TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start) cargo test --all-features --test conformance -- --ignored kafka_broker
//! ```

#[cfg(feature = "kafka")]
#[path = "conformance/kafka.rs"]
mod kafka;
#[cfg(feature = "kafka")]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use topicbus_conformance::Memory;

topicbus_conformance::suite! {
    // `[..]` is an attribute put on each of the harness's tests.
    memory [doc = "On the memory transport."] => Memory::plain(),
    memory_codec [doc = "On the memory transport, every payload through its codec."]
        => Memory::codec(),
    #[cfg(feature = "kafka")]
    kafka_mock [doc = "On Kafka: librdkafka's in-process mock cluster."]
        => crate::kafka::Kafka::mock(),
    #[cfg(feature = "kafka")]
    kafka_broker [ignore = "needs a broker: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
        => crate::kafka::Kafka::broker(),
}
