//! `topicbus`: a command-line tool for operators of topicbus on Kafka.
//!
//! ```text
//! topicbus --brokers 127.0.0.1:9092 tail orders.created --from earliest --count 10
//! topicbus publish orders.created '{"order_id":"o-1"}' --key o-1 --header tenant=acme
//! topicbus request search.request '{"query":"rust"}' --timeout 5s
//! topicbus dlq list orders.created
//! topicbus dlq redrive orders.created
//! topicbus replay /var/log/search/events.jsonl --since 2026-11-27T10:00:00Z
//! ```
//!
//! Results go to stdout, progress and counts of long operations to stderr;
//! any failure prints one `topicbus: error: ...` line and exits with 1
//! (usage mistakes exit with 2).

mod cluster;
mod dlq;
mod replay;
mod send;
mod show;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::Cluster;

#[derive(Debug, Parser)]
#[command(
    name = "topicbus",
    version,
    about = "Inspect and drive topicbus topics on Kafka"
)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Connection {
    /// Kafka bootstrap brokers, comma-separated host:port [env: TOPICBUS_BROKERS, or RICE_KAFKA_BROKERS]
    #[arg(long, global = true, env = "TOPICBUS_BROKERS", hide_env = true)]
    brokers: Option<String>,

    /// A librdkafka property for every client, as key=value (repeatable), e.g. client.id=ops. TLS and SASL: the variables TOPICBUS_KAFKA_SECURITY_PROTOCOL, TOPICBUS_KAFKA_SASL_{MECHANISM,USERNAME,PASSWORD}, TOPICBUS_KAFKA_SSL_{CA_LOCATION,CERTIFICATE_LOCATION,KEY_LOCATION,KEY_PASSWORD}
    #[arg(long = "property", short = 'X', global = true, value_name = "KEY=VALUE", value_parser = key_value)]
    properties: Vec<(String, String)>,

    /// Time limit of reaching the brokers, of a publish and of waiting for a reply, e.g. 500ms, 5s, 1m
    #[arg(long, global = true, default_value = "10s", value_parser = duration)]
    timeout: Duration,

    /// Let the broker auto-create the reply topic of `publish`/`request` instead of creating it through the admin API (brokers without CreateTopics, e.g. librdkafka's mock cluster)
    #[arg(long, global = true)]
    auto_create_topics: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a topic's records (partition, offset, key, headers, payload) as they arrive
    Tail {
        /// The topic to read
        topic: String,
        /// Where to start: the oldest record kept, or what arrives from now on
        #[arg(long, value_enum, default_value_t = From::Latest)]
        from: From,
        /// Stop after this many records (default: run until Ctrl-C)
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        view: View,
    },
    /// Publish a JSON payload with topicbus's CloudEvents headers; prints the message id
    Publish {
        /// The topic to publish to (it must exist)
        topic: String,
        /// The payload: JSON text, or `-` to read it from stdin
        json: String,
        #[command(flatten)]
        extra: Extra,
    },
    /// Send a JSON request to a topicbus responder and print its reply
    Request {
        /// The request topic (it must exist)
        topic: String,
        /// The request payload: JSON text, or `-` to read it from stdin
        json: String,
        #[command(flatten)]
        extra: Extra,
        #[command(flatten)]
        view: View,
    },
    /// Dead-letter topics (`{topic}.dlq`)
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Republish what an event log recorded as published since a time (topicbus's event log, JSON lines)
    Replay {
        /// The event log file
        event_log: PathBuf,
        /// Replay messages published at or after this time: RFC 3339 (2026-11-27T10:00:00Z) or a duration ago (15m, 2h)
        #[arg(long, value_parser = since)]
        since: SystemTime,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the records of `{topic}.dlq` with their dead-letter headers and a count
    List {
        /// The topic whose dead letters to list (without `.dlq`)
        topic: String,
        #[command(flatten)]
        view: View,
    },
    /// Move the messages now in `{topic}.dlq` back to the topic, for the consumer group that gave up on them
    Redrive {
        /// The topic whose dead letters to re-drive (without `.dlq`)
        topic: String,
    },
}

/// Key and headers of a message to send.
#[derive(Debug, Args)]
struct Extra {
    /// The partition key
    #[arg(long)]
    key: Option<String>,
    /// An application header, as name=value (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = key_value)]
    headers: Vec<(String, String)>,
}

/// How received payloads are shown.
#[derive(Debug, Args)]
struct View {
    /// Indent JSON payloads, one member per line (default: the JSON text as sent, on one line)
    #[arg(long)]
    pretty: bool,
}

impl View {
    fn json(&self) -> show::Json {
        if self.pretty {
            show::Json::Pretty
        } else {
            show::Json::AsSent
        }
    }
}

/// Where `tail` starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum From {
    /// The oldest record each partition still keeps
    Earliest,
    /// Only records published after `tail` started
    Latest,
}

/// A failure to report: one line, exit code 1.
#[derive(Debug)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::convert::From<topicbus::Error> for Failure {
    fn from(error: topicbus::Error) -> Self {
        Failure(error.to_string())
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{text}`")),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration like 5s: {e}"))
}

/// An RFC 3339 time, or a duration before now.
fn since(text: &str) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither a time like 2026-11-27T10:00:00Z nor a duration like 15m")
    })?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("`{text}` ago is before the start of time"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("topicbus: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    // A reader blocked in librdkafka must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // The failure may quote what a responder or broker sent.
            eprintln!("topicbus: error: {}", show::escape(&failure.0));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let connection = cli.connection;
    let cluster = Cluster::new(
        connection.brokers,
        connection.properties,
        connection.timeout,
        connection.auto_create_topics,
    )?;
    match cli.command {
        Command::Tail {
            topic,
            from,
            count,
            view,
        } => tail::run(cluster, topic, from, count, view.json()).await,
        Command::Publish { topic, json, extra } => {
            send::publish(cluster, topic, &json, extra.key, extra.headers).await
        }
        Command::Request {
            topic,
            json,
            extra,
            view,
        } => send::request(cluster, topic, &json, extra.key, extra.headers, view.json()).await,
        Command::Dlq { command } => match command {
            DlqCommand::List { topic, view } => dlq::list(cluster, topic, view.json()).await,
            DlqCommand::Redrive { topic } => dlq::redrive(cluster, topic).await,
        },
        Command::Replay { event_log, since } => replay::run(cluster, event_log, since).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "topicbus",
            "request",
            "search.request",
            "{}",
            "--timeout",
            "5s",
            "--brokers",
            "b:9092",
            "-X",
            "client.id=ops",
        ])
        .expect("parses");
        assert_eq!(cli.connection.timeout, Duration::from_secs(5));
        assert_eq!(cli.connection.brokers.as_deref(), Some("b:9092"));
        assert_eq!(
            cli.connection.properties,
            vec![("client.id".to_owned(), "ops".to_owned())]
        );
    }

    #[test]
    fn malformed_pairs_and_durations_are_refused_with_the_input() {
        assert!(key_value("novalue").unwrap_err().contains("`novalue`"));
        assert!(key_value("=v").is_err());
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(duration("soon").unwrap_err().contains("`soon`"));
    }

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let time = since("2026-11-27T10:00:00Z").expect("RFC 3339");
        assert_eq!(
            humantime::format_rfc3339(time).to_string(),
            "2026-11-27T10:00:00Z"
        );
        let before = SystemTime::now();
        let ago = since("15m").expect("a duration");
        let after = SystemTime::now();
        let quarter = Duration::from_secs(15 * 60);
        assert!(before - quarter <= ago && ago <= after - quarter);
        assert!(since("yesterday-ish")
            .unwrap_err()
            .contains("`yesterday-ish`"));
    }
}
