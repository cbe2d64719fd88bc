//! Loading a [`BusConfig`] from files and the environment, in layers.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::config::{ConfigError, Source, Value, ValueKind};
use serde::Deserialize;

use super::schema::{BusConfig, DEFAULT_ENV_PREFIX, KEYS};
use crate::error::{Error, Result};
use crate::secret::is_secret;

/// Environment variables as `Debug` shows them: secret-looking values
/// redacted.
fn shown_vars(vars: &::config::Map<String, String>) -> BTreeMap<&str, &str> {
    vars.iter()
        .map(|(name, value)| {
            let shown = if is_secret(name) { "<redacted>" } else { value };
            (name.as_str(), shown)
        })
        .collect()
}

impl BusConfig {
    /// Loads from the environment variables with the prefix `TOPICBUS`
    /// (`TOPICBUS_BUS_TYPE`, `TOPICBUS_KAFKA_BROKERS`, ...) and validates.
    pub fn from_env() -> Result<BusConfig> {
        Self::from_env_prefixed(DEFAULT_ENV_PREFIX)
    }

    /// Loads from the environment variables with `prefix` and validates.
    /// With `RICE`, the Go service's variables work unchanged:
    /// `RICE_BUS_TYPE`, `RICE_KAFKA_BROKERS`, `RICE_KAFKA_GROUP`,
    /// `RICE_EVENT_LOG_ENABLED`, `RICE_EVENT_LOG_PATH`.
    pub fn from_env_prefixed(prefix: &str) -> Result<BusConfig> {
        Self::loader().env_prefix(prefix).load()
    }

    /// Loads the `bus` block of a YAML or TOML file (by its extension), then
    /// the environment variables with `prefix` on top, and validates.
    pub fn load(path: impl AsRef<Path>, prefix: &str) -> Result<BusConfig> {
        Self::loader().file(path).env_prefix(prefix).load()
    }

    /// A loader for other combinations of sources.
    pub fn loader() -> ConfigLoader {
        ConfigLoader::default()
    }
}

/// Loads a [`BusConfig`] from files and the environment, in layers.
///
/// Layers, each overriding the ones before: the defaults, each file in the
/// order given (its `bus` block; the rest of the file is left to the
/// application), then the environment variables with the prefix.
///
/// Environment variables are `{PREFIX}_{KEY}` with the key in upper case
/// (`RICE_KAFKA_BROKERS`), except the type, which is `{PREFIX}_BUS_TYPE`
/// as in the Go service; Kafka properties are
/// `{PREFIX}_KAFKA_PROPERTIES__{NAME}`. Other variables with the prefix
/// are left alone (the application's own settings may share it); empty
/// variables count as unset. In a file, an unknown key in the `bus` block
/// is an error.
///
/// ```
/// use topicbus::{BusConfig, BusType};
///
/// let dir = std::env::temp_dir().join(format!("topicbus-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("rice.yaml");
/// std::fs::write(&path, "bus:\n  kafka_brokers: [\"k1:9092\"]\n  retries: 5\n").unwrap();
/// let config = BusConfig::loader()
///     .file(&path)
///     .env_prefix("RICE")
///     .env_vars([("RICE_KAFKA_BROKERS", "k2:9092,k3:9092")])
///     .load()?;
/// assert_eq!(config.bus_type, BusType::Memory);
/// assert_eq!(config.retries, 5);
/// assert_eq!(config.kafka_brokers, ["k2:9092", "k3:9092"]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), topicbus::Error>(())
/// ```
///
/// `Debug` output hides the values of variables whose names look secret
/// (as [`BusConfig`]'s hides secret Kafka properties).
#[derive(Clone, Default)]
#[must_use]
pub struct ConfigLoader {
    files: Vec<PathBuf>,
    env_prefix: Option<String>,
    env_vars: Option<::config::Map<String, String>>,
}

impl fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigLoader")
            .field("files", &self.files)
            .field("env_prefix", &self.env_prefix)
            .field("env_vars", &self.env_vars.as_ref().map(shown_vars))
            .finish()
    }
}

impl ConfigLoader {
    /// Adds a YAML (`.yaml`, `.yml`) or TOML (`.toml`) file; it must exist.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.files.push(path.as_ref().to_path_buf());
        self
    }

    /// Reads the environment variables starting with `{prefix}_`.
    pub fn env_prefix(mut self, prefix: &str) -> Self {
        self.env_prefix = Some(prefix.trim_end_matches('_').to_owned());
        self
    }

    /// Reads these variables instead of the process environment (for tests
    /// and tools), with the prefix of [`ConfigLoader::env_prefix`] (default
    /// `TOPICBUS`).
    pub fn env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env_vars = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Loads and validates.
    pub fn load(self) -> Result<BusConfig> {
        let origins = Origins::default();
        let mut builder = ::config::Config::builder();
        for path in &self.files {
            builder = builder.add_source(FileLayer {
                path: path.clone(),
                origins: origins.clone(),
            });
        }
        let env_prefix = match (self.env_prefix, &self.env_vars) {
            (None, Some(_)) => Some(DEFAULT_ENV_PREFIX.to_owned()),
            (prefix, _) => prefix,
        };
        if let Some(prefix) = &env_prefix {
            builder = builder.add_source(EnvLayer {
                prefix: prefix.clone(),
                vars: self.env_vars.clone(),
                origins: origins.clone(),
            });
        }
        let merged = builder.build();
        // The layers recorded where each key came from while `build` read them.
        let names = Names {
            prefix: env_prefix,
            from_files: !self.files.is_empty(),
            origins: origins.0.lock().expect("poisoned").clone(),
        };
        let merged = merged.map_err(|e| names.translate(e))?;
        let config = match merged.get::<Value>("bus") {
            Ok(value) => BusConfig::deserialize(value).map_err(|e| names.translate(e))?,
            Err(ConfigError::NotFound(_)) => BusConfig::default(),
            Err(other) => return Err(names.translate(other)),
        };
        config
            .check()
            .map_err(|(key, message)| names.error(key, message))?;
        Ok(config)
    }
}

/// Where a key's value came from, to name it as the user wrote it.
#[derive(Debug, Clone)]
enum Origin {
    Env(String),
    File(PathBuf),
}

/// The origin of each key, filled in by the layers as they are read.
#[derive(Debug, Clone, Default)]
struct Origins(Arc<Mutex<HashMap<String, Origin>>>);

impl Origins {
    fn record(&self, key: &str, origin: Origin) {
        self.0
            .lock()
            .expect("poisoned")
            .insert(key.to_owned(), origin);
    }
}

/// Names keys in errors as the user wrote them.
struct Names {
    prefix: Option<String>,
    /// Whether files were read (a key no layer set is then named as in a
    /// file when there is no environment prefix).
    from_files: bool,
    origins: HashMap<String, Origin>,
}

impl Names {
    /// An error about `key` (of the `bus` block).
    fn error(&self, key: &str, message: impl fmt::Display) -> Error {
        match self.origins.get(key) {
            Some(Origin::Env(var)) => Error::Config {
                key: var.clone(),
                message: message.to_string(),
            },
            Some(Origin::File(path)) => Error::Config {
                key: format!("bus.{key}"),
                message: format!("{message} (in {})", path.display()),
            },
            None => Error::Config {
                key: match &self.prefix {
                    Some(prefix) => env_var(prefix, key),
                    None if self.from_files => format!("bus.{key}"),
                    None => key.to_owned(),
                },
                message: message.to_string(),
            },
        }
    }

    fn translate(&self, error: ConfigError) -> Error {
        match error {
            ConfigError::Foreign(cause) => match cause.downcast::<Reported>() {
                Ok(reported) => reported.0,
                Err(cause) => Error::Config {
                    key: "configuration file".to_owned(),
                    message: cause.to_string(),
                },
            },
            ConfigError::FileParse { uri, cause } => Error::Config {
                key: uri.unwrap_or_else(|| "configuration file".to_owned()),
                message: cause.to_string(),
            },
            ConfigError::Type {
                unexpected,
                expected,
                key,
                ..
            } => self.error(
                &top_key(key.as_deref()),
                format!("{unexpected}: expected {expected}"),
            ),
            ConfigError::At { error, key, .. } => {
                self.error(&top_key(key.as_deref()), error.to_string())
            }
            other => Error::Config {
                key: "bus".to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// The key of the `bus` block a config-rs key path (`kafka_brokers[1]`,
/// `kafka_properties.acks`) starts with.
fn top_key(path: Option<&str>) -> String {
    let path = path.unwrap_or("bus");
    let end = path.find(['.', '[']).unwrap_or(path.len());
    path[..end].to_owned()
}

/// The environment variable of `key` for `prefix`.
pub(super) fn env_var(prefix: &str, key: &str) -> String {
    match key {
        "type" => format!("{prefix}_BUS_TYPE"),
        "kafka_properties" => format!("{prefix}_KAFKA_PROPERTIES__*"),
        key => format!("{prefix}_{}", key.to_ascii_uppercase()),
    }
}

/// An error already in topicbus's terms, carried through config-rs.
#[derive(Debug)]
struct Reported(Error);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Reported {}

fn reported(error: Error) -> ConfigError {
    ConfigError::Foreign(Box::new(Reported(error)))
}

/// The `bus` block of a file, as config-rs reads it, with the keys checked
/// and Kafka property names in their environment form (`sasl_username`),
/// so that a file and the environment set the same property.
#[derive(Debug, Clone)]
struct FileLayer {
    path: PathBuf,
    origins: Origins,
}

impl Source for FileLayer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<::config::Map<String, Value>, ConfigError> {
        let file_error = |message: String| {
            reported(Error::Config {
                key: self.path.display().to_string(),
                message,
            })
        };
        if !self.path.is_file() {
            return Err(file_error("no such configuration file".to_owned()));
        }
        let mut root = ::config::File::from(self.path.as_path())
            .collect()
            .map_err(|error| match error {
                ConfigError::FileParse { cause, .. } => file_error(cause.to_string()),
                other => other,
            })?;
        let Some(block) = root.remove("bus") else {
            return Ok(::config::Map::new());
        };
        let origin = block.origin().map(str::to_owned);
        let block = block.into_table().map_err(|_| {
            file_error("`bus` must be a table of settings (the Go service's `bus:` block)".into())
        })?;
        let mut out = ::config::Map::new();
        for (key, value) in block {
            if !KEYS.contains(&key.as_str()) {
                return Err(reported(Error::Config {
                    key: format!("bus.{key}"),
                    message: format!(
                        "unknown key (in {}); the keys are: {}",
                        self.path.display(),
                        KEYS.join(", ")
                    ),
                }));
            }
            let value = if key == "kafka_properties" {
                match value.kind {
                    ValueKind::Table(properties) => {
                        let properties: ::config::Map<String, Value> = properties
                            .into_iter()
                            .map(|(name, value)| (name.replace('.', "_"), value))
                            .collect();
                        Value::new(origin.as_ref(), properties)
                    }
                    other => Value::new(origin.as_ref(), other),
                }
            } else {
                value
            };
            self.origins.record(&key, Origin::File(self.path.clone()));
            out.insert(format!("bus.{key}"), value);
        }
        Ok(out)
    }
}

/// The environment variables with a prefix, as config-rs reads them,
/// renamed to the keys of the `bus` block.
#[derive(Clone)]
struct EnvLayer {
    prefix: String,
    vars: Option<::config::Map<String, String>>,
    origins: Origins,
}

impl fmt::Debug for EnvLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvLayer")
            .field("prefix", &self.prefix)
            .field("vars", &self.vars.as_ref().map(shown_vars))
            .finish_non_exhaustive()
    }
}

impl Source for EnvLayer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<::config::Map<String, Value>, ConfigError> {
        let vars = ::config::Environment::with_prefix(&self.prefix)
            .prefix_separator("_")
            .separator("__")
            .ignore_empty(true)
            .source(self.vars.clone())
            .collect()?;
        let mut out = ::config::Map::new();
        for (name, value) in vars {
            let (key, rest) = match name.split_once('.') {
                Some((key, rest)) => (key, Some(rest)),
                None => (name.as_str(), None),
            };
            let key = match key {
                "bus_type" => "type",
                // `{PREFIX}_TYPE` is not the Go service's name for it.
                "type" => continue,
                key => key,
            };
            let nested_ok = key == "kafka_properties";
            if !KEYS.contains(&key) || (rest.is_some() && !nested_ok) {
                continue;
            }
            self.origins
                .record(key, Origin::Env(env_var(&self.prefix, key)));
            let path = match rest {
                Some(rest) => format!("bus.{key}.{rest}"),
                None => format!("bus.{key}"),
            };
            out.insert(path, value);
        }
        Ok(out)
    }
}
