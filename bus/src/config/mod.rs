//! Bus settings from the environment, YAML or TOML files, or code.
//!
//! [`BusConfig`] holds every setting [`Bus::connect`](crate::Bus::connect)
//! needs to build a bus. Load it from environment variables with a prefix,
//! from a configuration file whose bus settings sit under a `bus` key, or
//! both (the environment overrides the file); or deserialize it with serde
//! as part of your own configuration.
//!
//! ```
//! use topicbus::{Bus, BusConfig, BusType};
//!
//! # async fn demo() -> topicbus::Result<()> {
//! // The Go service's variables: RICE_BUS_TYPE, RICE_KAFKA_BROKERS, ...
//! let config = BusConfig::loader()
//!     .env_prefix("RICE")
//!     .env_vars([("RICE_BUS_TYPE", "memory"), ("RICE_KAFKA_GROUP", "search")])
//!     .load()?;
//! assert_eq!(config.bus_type, BusType::Memory);
//! assert_eq!(config.service_name(), "search");
//! let bus = Bus::connect(config).await?;
//! bus.shutdown().await?;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! Loading is layered with the [`config`](https://docs.rs/config) crate:
//! defaults, then each file in the order given, then the environment.
//! Every loaded configuration is validated; an error names the key as the
//! user wrote it (`RICE_BUS_TYPE`, or `bus.type` and the file) and the value.

mod load;
mod parse;
mod schema;
mod security;
#[cfg(test)]
mod tests;
mod validate;

pub use self::load::ConfigLoader;
pub use self::schema::{BusConfig, BusType, DEFAULT_ENV_PREFIX};
pub use self::security::{SaslMechanism, SecurityProtocol};
#[cfg(not(feature = "kafka"))]
pub(crate) use self::validate::NO_KAFKA;
