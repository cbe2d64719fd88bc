//! A bus from its settings: [`Bus::connect`].

use super::{Bus, BusBuilder};
use crate::config::{BusConfig, BusType};
use crate::error::{Error, Result};
use crate::event_log::EventLog;
use crate::transport::memory::MemoryBroker;

impl Bus {
    /// Builds the bus `config` describes: validates it, opens the event log
    /// if enabled, then runs on memory or connects to Kafka.
    ///
    /// When Kafka is asked for and no broker answers within
    /// `kafka_connect_timeout`, this fails with [`Error::Unavailable`],
    /// unless `fallback_to_memory` is set: then it logs a warning and runs
    /// on the memory transport. A Kafka type in a build without the `kafka`
    /// feature is an [`Error::Config`].
    ///
    /// ```
    /// # async fn demo() -> topicbus::Result<()> {
    /// use topicbus::{Bus, BusConfig};
    ///
    /// // In a service: Bus::connect(BusConfig::from_env_prefixed("RICE")?)
    /// let bus = Bus::connect(BusConfig::default()).await?;
    /// println!("service {}", bus.service());
    /// bus.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn connect(config: BusConfig) -> Result<Bus> {
        config.validate()?;
        let mut builder = Bus::builder()
            .service(config.service_name())
            .request_timeout(config.request_timeout)
            .shutdown_timeout(config.shutdown_timeout)
            .retries(config.retries)
            .max_pending_requests(config.max_pending_requests)
            .allowed_reply_topics(config.allowed_reply_topics.iter().cloned());
        if let Some(key) = &config.reply_key {
            builder = builder.reply_key(key.clone());
        }
        if config.event_log_enabled {
            let path = config
                .event_log_path
                .as_deref()
                .expect("validated: an enabled event log has a path");
            let log = EventLog::builder(path)
                .flush_interval(config.event_log_flush_interval)
                .max_file_bytes(config.event_log_max_file_bytes)
                .open()?;
            builder = builder.event_log(log);
        }
        match config.bus_type {
            BusType::Memory => Ok(builder
                .memory(MemoryBroker::new(config.memory_config()))
                .build()),
            BusType::Kafka => connect_kafka(builder, &config).await,
        }
    }
}

#[cfg(feature = "kafka")]
async fn connect_kafka(builder: BusBuilder, config: &BusConfig) -> Result<Bus> {
    match builder.clone().kafka(config.kafka_config()).connect().await {
        Err(error @ Error::Unavailable { .. }) if config.fallback_to_memory => {
            tracing::warn!(
                %error,
                "Kafka is unreachable; running on the memory transport (fallback_to_memory)"
            );
            Ok(builder
                .memory(MemoryBroker::new(config.memory_config()))
                .build())
        }
        connected => connected,
    }
}

#[cfg(not(feature = "kafka"))]
async fn connect_kafka(_builder: BusBuilder, _config: &BusConfig) -> Result<Bus> {
    Err(Error::Config {
        key: "type".to_owned(),
        message: crate::config::NO_KAFKA.to_owned(),
    })
}
