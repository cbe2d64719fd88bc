//! Kafka security against Apache Kafka's own listeners: TLS, mutual TLS,
//! SASL SCRAM-SHA-256, SCRAM-SHA-512, PLAIN and OAUTHBEARER, each
//! configured the way a service is, through `BusConfig`'s named keys in
//! the environment (`TOPICBUS_KAFKA_SECURITY_PROTOCOL`, ...).
//!
//! The conformance kit's core cases (publish/subscribe, consumer groups,
//! request/reply to the right instance, dead letters) run on each listener;
//! then the OAUTHBEARER token's refresh, and one case for each bad
//! credential or certificate, which must end in a clear error within the
//! connect timeout.
//!
//! Every test is ignored unless asked for, with the lines that
//! `scripts/kafka.sh start --security` prints in the environment. The
//! listeners share one broker and the cases' topics, so run one listener's
//! cases at a time (`.ci/run` does):
//!
//! ```text
//! set -a; eval "$(scripts/kafka.sh start --security)"; set +a
//! cargo test --all-features --test kafka_security -- --ignored scram_sha_512::
//! cargo test --all-features --test kafka_security -- --ignored oauthbearer_tokens refused::
//! ```
#![cfg(feature = "kafka-tls")]

#[allow(dead_code)]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use topicbus::{Bus, BusConfig, Topic};
use topicbus_conformance::{Harness, Network, Setup};

/// The broker's listeners (scripts/kafka.sh start --security).
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    /// TLS with a server certificate.
    Ssl,
    /// TLS where the broker requires a client certificate.
    MutualTls,
    /// SASL_SSL, SCRAM-SHA-256.
    ScramSha256,
    /// SASL_SSL, SCRAM-SHA-512.
    ScramSha512,
    /// SASL_SSL, PLAIN.
    Plain,
    /// SASL_SSL, OAUTHBEARER with librdkafka's unsecured JWT.
    OAuthBearer,
}

/// A variable `scripts/kafka.sh start --security` printed.
fn secure(name: &str) -> String {
    let var = format!("TOPICBUS_SECURE_{name}");
    std::env::var(&var).unwrap_or_else(|_| {
        panic!("{var} is not set: set -a; eval \"$(scripts/kafka.sh start --security)\"")
    })
}

/// A file of the test certificates (scripts/kafka/certs.sh).
fn cert(file: &str) -> String {
    PathBuf::from(secure("CERTS"))
        .join(file)
        .display()
        .to_string()
}

/// Seconds an OAUTHBEARER token lives in the conformance runs (the
/// refresh has a test of its own).
const TOKEN_LIFE_SECONDS: u64 = 60;

/// The environment of a service that connects to `listener` as a user
/// would write it, for the prefix `TOPICBUS`.
fn environment(listener: Listener) -> Vec<(String, String)> {
    let mut vars = vec![
        ("TOPICBUS_BUS_TYPE", "kafka".to_owned()),
        ("TOPICBUS_KAFKA_SSL_CA_LOCATION", cert("ca.pem")),
    ];
    let password = |mechanism: &str| {
        [
            ("TOPICBUS_KAFKA_BROKERS", secure("SASL")),
            ("TOPICBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("TOPICBUS_KAFKA_SASL_MECHANISM", mechanism.to_owned()),
            ("TOPICBUS_KAFKA_SASL_USERNAME", secure("USER")),
            ("TOPICBUS_KAFKA_SASL_PASSWORD", secure("PASSWORD")),
        ]
    };
    match listener {
        Listener::Ssl => vars.extend([
            ("TOPICBUS_KAFKA_BROKERS", secure("SSL")),
            ("TOPICBUS_KAFKA_SECURITY_PROTOCOL", "ssl".to_owned()),
        ]),
        Listener::MutualTls => vars.extend([
            ("TOPICBUS_KAFKA_BROKERS", secure("MTLS")),
            ("TOPICBUS_KAFKA_SECURITY_PROTOCOL", "ssl".to_owned()),
            (
                "TOPICBUS_KAFKA_SSL_CERTIFICATE_LOCATION",
                cert("client.crt"),
            ),
            ("TOPICBUS_KAFKA_SSL_KEY_LOCATION", cert("client.key")),
            (
                "TOPICBUS_KAFKA_SSL_KEY_PASSWORD",
                std::fs::read_to_string(cert("client.key.password"))
                    .expect("client.key.password")
                    .trim()
                    .to_owned(),
            ),
        ]),
        Listener::ScramSha256 => vars.extend(password("SCRAM-SHA-256")),
        Listener::ScramSha512 => vars.extend(password("SCRAM-SHA-512")),
        Listener::Plain => vars.extend(password("PLAIN")),
        Listener::OAuthBearer => vars.extend(oauth_environment(TOKEN_LIFE_SECONDS)),
    }
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// OAUTHBEARER with librdkafka's unsecured JWT, each token living
/// `life_seconds`. The broker makes every session re-authenticate within
/// 3 s, with a token it validates again (its expiry included).
fn oauth_environment(life_seconds: u64) -> [(&'static str, String); 5] {
    [
        ("TOPICBUS_KAFKA_BROKERS", secure("OAUTH")),
        ("TOPICBUS_KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_owned()),
        ("TOPICBUS_KAFKA_SASL_MECHANISM", "OAUTHBEARER".to_owned()),
        (
            "TOPICBUS_KAFKA_PROPERTIES__ENABLE_SASL_OAUTHBEARER_UNSECURE_JWT",
            "true".to_owned(),
        ),
        (
            "TOPICBUS_KAFKA_PROPERTIES__SASL_OAUTHBEARER_CONFIG",
            format!("principal=alice lifeSeconds={life_seconds}"),
        ),
    ]
}

/// `vars` loaded as a service loads its environment.
fn load(vars: Vec<(String, String)>) -> BusConfig {
    BusConfig::loader()
        .env_prefix("TOPICBUS")
        .env_vars(vars)
        .load()
        .expect("the environment loads")
}

/// A name part unique to this process and call: the listeners share the
/// broker, and earlier runs used it too.
fn scope() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The conformance harness on one listener of the secured broker.
#[derive(Debug, Clone, Copy)]
pub struct Secured(pub Listener);

impl Harness for Secured {
    fn name(&self) -> &'static str {
        "kafka_security"
    }

    fn unavailable(&self) -> Option<String> {
        std::env::var("TOPICBUS_SECURE_SSL").is_err().then(|| {
            "set the variables of `scripts/kafka.sh start --security` in the environment".into()
        })
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn publishers_wait_for_slow_consumers(&self) -> bool {
        false
    }

    fn knows_responders(&self) -> bool {
        false
    }

    fn network(&self, setup: Setup) -> BoxFuture<'static, Box<dyn Network>> {
        let listener = self.0;
        Box::pin(async move {
            Box::new(SecuredNet {
                config: load(environment(listener)),
                setup,
                scope: scope(),
            }) as Box<dyn Network>
        })
    }
}

struct SecuredNet {
    config: BusConfig,
    setup: Setup,
    /// Unique to this network: the listeners share the broker.
    scope: String,
}

impl Network for SecuredNet {
    fn bus(&self, service: &str) -> BoxFuture<'_, Bus> {
        let s = &self.setup;
        let mut kafka = mock_kafka::test_settings(self.config.kafka_config());
        if let Some(n) = s.partitions {
            kafka = kafka.default_partitions(i32::try_from(n).unwrap_or(i32::MAX));
        }
        let builder = s.builder(service).kafka(kafka);
        Box::pin(async move { builder.connect().await.expect("connect to Kafka") })
    }

    fn scope(&self, name: &str) -> String {
        format!("{name}.{}", self.scope)
    }
}

/// The core cases of the conformance kit on each listener, in a module
/// named after it.
macro_rules! on_listeners {
    ({ $($module:ident => $listener:expr),* $(,)? } $cases:tt) => {
        $( on_listeners!(@one $module => $listener, $cases); )*
    };
    (@one $module:ident => $listener:expr, [$($case_module:ident :: $case:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
                fn $case() {
                    topicbus_conformance::__run(
                        concat!(stringify!($module), "::", stringify!($case)),
                        || crate::Secured($listener),
                        topicbus_conformance::cases::$case_module::$case,
                    );
                }
            )*
        }
    };
}

on_listeners! {
    {
        ssl => crate::Listener::Ssl,
        mutual_tls => crate::Listener::MutualTls,
        scram_sha_256 => crate::Listener::ScramSha256,
        scram_sha_512 => crate::Listener::ScramSha512,
        plain => crate::Listener::Plain,
        oauthbearer => crate::Listener::OAuthBearer,
    }
    [
        pubsub::payload_and_metadata_arrive_intact,
        pubsub::publish_batch_delivers_each_message_once,
        groups::two_groups_each_receive_everything,
        groups::instances_of_one_service_share_the_work,
        request_reply::request_reply_round_trip_is_typed,
        request_reply::thousand_concurrent_requests_each_get_their_own_reply,
        failures::exhausted_retries_dead_letter_with_the_reason,
        failures::undecodable_message_is_dead_lettered_at_once,
    ]
}

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(60);

/// `vars` with each of `changes` set, replaced, or (with `None`) removed.
fn changed(
    mut vars: Vec<(String, String)>,
    changes: &[(&str, Option<&str>)],
) -> Vec<(String, String)> {
    for (name, value) in changes {
        vars.retain(|(n, _)| n != name);
        if let Some(value) = value {
            vars.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    vars
}

/// Connecting with `vars` fails within the connect timeout with
/// `Unavailable` or `Config`, and the error says each part of `cause`.
async fn refused(vars: Vec<(String, String)>, cause: &[&str]) {
    let config = load(changed(
        vars,
        &[("TOPICBUS_KAFKA_CONNECT_TIMEOUT", Some("5s"))],
    ));
    let error = match tokio::time::timeout(HANG, Bus::connect(config)).await {
        Err(_) => panic!("connect hung instead of failing"),
        Ok(Ok(_)) => panic!("connected, but should have been refused"),
        Ok(Err(error)) => error,
    };
    assert!(
        matches!(
            error.kind(),
            topicbus::ErrorKind::Unavailable | topicbus::ErrorKind::Config
        ),
        "{error:?}"
    );
    let text = error.to_string();
    eprintln!("refused as it should be: {text}");
    for part in cause {
        assert!(text.contains(part), "the error should say `{part}`: {text}");
    }
}

/// Bad credentials and certificates: each ends in a clear error within the
/// connect timeout, never a hang.
mod refused {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn wrong_password() {
        let vars = changed(
            environment(Listener::ScramSha512),
            &[("TOPICBUS_KAFKA_SASL_PASSWORD", Some("not-the-password"))],
        );
        refused(vars, &["Authentication failed"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn unknown_user() {
        let vars = changed(
            environment(Listener::Plain),
            &[("TOPICBUS_KAFKA_SASL_USERNAME", Some("mallory"))],
        );
        refused(vars, &["Authentication failed"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn mechanism_the_listener_does_not_enable() {
        let oauth = secure("OAUTH");
        let vars = changed(
            environment(Listener::ScramSha256),
            &[("TOPICBUS_KAFKA_BROKERS", Some(&oauth))],
        );
        refused(vars, &["Unsupported SASL mechanism"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn certificate_signed_by_another_ca() {
        let other = cert("other-ca.pem");
        let vars = changed(
            environment(Listener::Ssl),
            &[("TOPICBUS_KAFKA_SSL_CA_LOCATION", Some(&other))],
        );
        refused(vars, &["certificate verify failed", "not signed by a CA"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn expired_certificate() {
        let expired = secure("EXPIRED");
        let vars = changed(
            environment(Listener::Ssl),
            &[("TOPICBUS_KAFKA_BROKERS", Some(&expired))],
        );
        refused(vars, &["certificate verify failed", "expired"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn hostname_mismatch() {
        // The certificate names 127.0.0.1 only.
        let by_name = secure("SSL").replace("127.0.0.1", "localhost");
        let vars = changed(
            environment(Listener::Ssl),
            &[("TOPICBUS_KAFKA_BROKERS", Some(&by_name))],
        );
        refused(vars, &["certificate verify failed", "not naming the host"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn client_certificate_missing_where_mutual_tls_is_required() {
        let vars = changed(
            environment(Listener::MutualTls),
            &[
                ("TOPICBUS_KAFKA_SSL_CERTIFICATE_LOCATION", None),
                ("TOPICBUS_KAFKA_SSL_KEY_LOCATION", None),
                ("TOPICBUS_KAFKA_SSL_KEY_PASSWORD", None),
            ],
        );
        refused(vars, &["refused the client's certificate, or requires one"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn plaintext_against_the_tls_port() {
        let vars = changed(
            environment(Listener::Ssl),
            &[
                ("TOPICBUS_KAFKA_SECURITY_PROTOCOL", Some("plaintext")),
                ("TOPICBUS_KAFKA_SSL_CA_LOCATION", None),
            ],
        );
        refused(vars, &["before answering: does security.protocol match"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
    async fn tls_against_the_plaintext_port() {
        let plaintext = secure("PLAINTEXT");
        let vars = changed(
            environment(Listener::Ssl),
            &[("TOPICBUS_KAFKA_BROKERS", Some(&plaintext))],
        );
        refused(vars, &["during the TLS handshake: a listener without TLS"]).await;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "security.oauth.ping", response = Pong)]
struct Ping {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "security.oauth.pong")]
struct Pong {
    n: u64,
}

/// OAUTHBEARER tokens that live 6 s, on a listener that makes every
/// session re-authenticate within 3 s and checks each token's expiry:
/// requests and replies (a producer, a group consumer, a reply reader and
/// the admin client on each side) keep flowing for three token lifetimes,
/// so every client presented refreshed tokens. (librdkafka refreshes at
/// 80 % of a token's life, checked every second: 6 s leaves a margin.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/kafka.sh start --security (see the file's docs)"]
async fn oauthbearer_tokens_are_refreshed_before_they_expire() {
    const LIFE_SECONDS: u64 = 6;
    let mut vars = vec![
        ("TOPICBUS_BUS_TYPE".to_owned(), "kafka".to_owned()),
        ("TOPICBUS_KAFKA_SSL_CA_LOCATION".to_owned(), cert("ca.pem")),
    ];
    vars.extend(oauth_environment(LIFE_SECONDS).map(|(k, v)| (k.to_owned(), v)));
    let config = load(vars);
    let scope = scope();
    let connect = |service: String| {
        Bus::builder()
            .service(service)
            .request_timeout(HANG / 2)
            .kafka(mock_kafka::test_settings(config.kafka_config()))
            .connect()
    };
    let responder = tokio::time::timeout(HANG, connect(format!("oauth-responder-{scope}")))
        .await
        .expect("connect hung")
        .expect("connect the responder");
    responder
        .group(format!("oauth.pings.{scope}"))
        .serve(|ping: Ping| async move { Ok::<_, String>(Pong { n: ping.n }) })
        .await
        .expect("serve");
    let requester = tokio::time::timeout(HANG, connect(format!("oauth-requester-{scope}")))
        .await
        .expect("connect hung")
        .expect("connect the requester");

    // Waits past the tokens' expiry; asserts nothing about time.
    let past_three_lifetimes = Instant::now() + Duration::from_secs(3 * LIFE_SECONDS + 1);
    let mut n = 0;
    while n < 3 || Instant::now() < past_three_lifetimes {
        let pong = tokio::time::timeout(HANG, requester.request(&Ping { n }).into_future())
            .await
            .unwrap_or_else(|_| panic!("request {n} hung"))
            .unwrap_or_else(|e| panic!("request {n} failed: {e}"));
        assert_eq!(pong.n, n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    requester.shutdown().await.expect("shutdown");
    responder.shutdown().await.expect("shutdown");
}
