//! One connection to the broker, made on first use and made again after it broke.

use std::sync::Arc;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::error::lapin_is_retryable;
use crate::{RabbitConfig, RabbitError};

/// A lazily (re)made connection. Channels come from the current connection; when it is
/// found broken, the next call connects again.
pub(crate) struct Link {
    config: RabbitConfig,
    connection: Mutex<Option<Arc<Connection>>>,
}

impl Link {
    pub(crate) fn new(config: RabbitConfig) -> Self {
        Self {
            config,
            connection: Mutex::new(None),
        }
    }

    pub(crate) fn config(&self) -> &RabbitConfig {
        &self.config
    }

    /// The live connection, connecting if there is none or it broke.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, RabbitError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.status().connected()
        {
            return Ok(connection.clone());
        }
        if slot.take().is_some() {
            tracing::info!(url = %self.config.redacted_url(), "RabbitMQ connection lost; reconnecting");
        }
        let connection = Arc::new(connect(&self.config).await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// A new channel; in confirm mode when `confirms`. A channel that does not open within
    /// the connect timeout means the connection is dead though not yet noticed (a silent
    /// network): it is dropped, and the next call connects again.
    pub(crate) async fn channel(&self, confirms: bool) -> Result<Channel, RabbitError> {
        let connection = self.connection().await?;
        let open = async {
            let channel = connection
                .create_channel()
                .await
                .map_err(RabbitError::amqp("channel.open"))?;
            if confirms {
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(RabbitError::amqp("confirm.select"))?;
            }
            Ok(channel)
        };
        let timeout = self.config.connect_timeout_value();
        match tokio::time::timeout(timeout, open).await {
            Ok(opened) => opened,
            Err(_) => {
                self.reset().await;
                Err(RabbitError::Connect {
                    url: self.config.redacted_url(),
                    reason: format!("no channel opened within {timeout:?}; reconnecting"),
                    retryable: true,
                })
            }
        }
    }

    /// Drops the current connection without waiting for the broker (it may be unreachable);
    /// the next call connects again.
    pub(crate) async fn reset(&self) {
        if let Some(connection) = self.connection.lock().await.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    connection.close(320, "zerolost: reconnecting".into()),
                )
                .await;
            });
        }
    }

    /// Closes the connection (a new one is made on next use).
    pub(crate) async fn close(&self) {
        if let Some(connection) = self.connection.lock().await.take()
            && connection.status().connected()
        {
            let _ = connection.close(200, "zerolost: closed".into()).await;
        }
    }
}

/// Checks that the broker of `config` can be reached over its link (TLS, credentials):
/// connects, then closes. A failure names its cause (unknown CA, name mismatch, expired
/// certificate, bad credentials, plaintext port).
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_rabbitmq::RabbitError> {
/// use zerolost_core::TlsFiles;
/// use zerolost_rabbitmq::{RabbitConfig, check_link};
/// let config = RabbitConfig::new("amqps://app:s3cret@mq.internal:5671/%2f")
///     .tls(TlsFiles::default().ca("/etc/zerolost/ca.pem"));
/// check_link(&config).await?;
/// # Ok(()) }
/// ```
pub async fn check_link(config: &RabbitConfig) -> Result<(), RabbitError> {
    config.validate()?;
    let connection = connect(config).await?;
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        connection.close(200, "zerolost: link checked".into()),
    )
    .await;
    Ok(())
}

/// Connects within the configured timeout.
pub(crate) async fn connect(config: &RabbitConfig) -> Result<Connection, RabbitError> {
    let uri = config.uri()?;
    let properties = ConnectionProperties::default().with_connection_name("zerolost".into());
    let url = config.redacted_url();
    let tls = tls_of(config, &uri)?;
    let address = format!("{}:{}", uri.authority.host, uri.authority.port);
    let plaintext = uri.scheme != lapin::uri::AMQPScheme::AMQPS;
    match tokio::time::timeout(config.connect_timeout_value(), open(uri, properties, tls)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(RabbitError::Connect {
            url,
            retryable: lapin_is_retryable(&e),
            reason: failure_text(&e.to_string(), plaintext, address).await,
        }),
        Err(_) => Err(RabbitError::Connect {
            url,
            reason: format!("no connection within {:?}", config.connect_timeout_value()),
            retryable: true,
        }),
    }
}

/// A failed connection's text, its cause named; a plaintext connection whose port speaks
/// TLS says so (lapin sees only bytes it cannot parse).
async fn failure_text(error: &str, plaintext: bool, address: String) -> String {
    let text = zerolost_core::redact_url(error);
    if plaintext && zerolost_core::LinkFailure::classify(&text).is_none() {
        let probe = zerolost_core::tls_port_hint(&address, std::time::Duration::from_secs(2));
        if let Some(hint) = probe.await {
            return zerolost_core::explain_link_error(&format!("{text}; {hint}"));
        }
    }
    zerolost_core::explain_link_error(&text)
}

/// The TLS settings of an `amqps://` URL (`None`: plaintext).
#[cfg(feature = "tls")]
type Tls = Option<lapin::tcp::OwnedTLSConfig>;
#[cfg(not(feature = "tls"))]
type Tls = Option<std::convert::Infallible>;

fn tls_of(config: &RabbitConfig, uri: &lapin::uri::AMQPUri) -> Result<Tls, RabbitError> {
    if uri.scheme != lapin::uri::AMQPScheme::AMQPS {
        return Ok(None);
    }
    #[cfg(feature = "tls")]
    return crate::tls::amqp_tls(config.tls_files()).map(Some);
    #[cfg(not(feature = "tls"))]
    Err(crate::tls::unsupported(&config.redacted_url()))
}

/// Opens the connection: over TLS with the configured CA and client certificate for
/// `amqps://`.
async fn open(
    uri: lapin::uri::AMQPUri,
    properties: ConnectionProperties,
    tls: Tls,
) -> lapin::Result<Connection> {
    match tls {
        #[cfg(feature = "tls")]
        Some(tls) => {
            let runtime = lapin::runtime::default_runtime()?;
            Connection::connect_uri_with_config(uri, properties, tls, runtime).await
        }
        _ => Connection::connect_uri(uri, properties).await,
    }
}

/// Closes `channel` in the background, giving up after a second (the broker may be
/// unreachable; a channel that cannot close dies with its connection).
pub(crate) fn close_quietly(channel: Channel) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            channel.close(200, "zerolost: channel reset".into()),
        )
        .await;
    });
}

/// Runs `work` on a channel of a connection of its own (setup, inspection), then closes the
/// connection whatever the outcome.
pub(crate) async fn with_channel<T>(
    config: &RabbitConfig,
    work: impl AsyncFnOnce(&Channel) -> Result<T, RabbitError>,
) -> Result<T, RabbitError> {
    let connection = connect(config).await?;
    // Bounded: a broker that stops answering must not hang setup (60 s covers reading a
    // long queue back).
    let bound = config
        .connect_timeout_value()
        .max(std::time::Duration::from_secs(60));
    let outcome = tokio::time::timeout(bound, async {
        match connection.create_channel().await {
            Ok(channel) => work(&channel).await,
            Err(e) => Err(RabbitError::amqp("channel.open")(e)),
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(RabbitError::Connect {
            url: config.redacted_url(),
            reason: format!("no answer within {bound:?}"),
            retryable: true,
        })
    });
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        connection.close(200, "zerolost: done".into()),
    )
    .await;
    outcome
}
