//! Plaintext to another machine: the relay refuses each such link of the config unless its
//! section says `allow_plaintext = true`.

use zerolost_core::{Error, refuse_remote_plaintext};

use crate::config::Config;

impl Config {
    /// Refuses each plaintext link of the relay to another machine whose section does not
    /// say `allow_plaintext = true`.
    pub fn refuse_remote_plaintext(&self) -> Result<(), Error> {
        if let Some(outbox) = &self.outbox {
            let url = outbox.url.expose();
            refuse_remote_plaintext("outbox", url, sql_encrypted(url), outbox.allow_plaintext)?;
        }
        if let Some(kafka) = &self.kafka
            && self.broker == Some(crate::config::BrokerKind::Kafka)
        {
            refuse_remote_plaintext(
                "kafka",
                &kafka.brokers,
                kafka.is_encrypted(),
                kafka.allow_plaintext,
            )?;
        }
        if let Some(rabbit) = &self.rabbitmq
            && self.broker == Some(crate::config::BrokerKind::Rabbitmq)
        {
            let url = rabbit.url.expose();
            let encrypted = url.to_ascii_lowercase().starts_with("amqps://");
            refuse_remote_plaintext("rabbitmq", url, encrypted, rabbit.allow_plaintext)?;
        }
        if let Some(rocket) = &self.rocketmq
            && self.broker == Some(crate::config::BrokerKind::Rocketmq)
        {
            refuse_remote_plaintext(
                "rocketmq",
                &rocket.name_server,
                rocket.use_tls,
                rocket.allow_plaintext,
            )?;
        }
        Ok(())
    }
}

/// Whether a database URL refuses a plaintext server (SQLite has no link).
pub fn sql_encrypted(url: &str) -> bool {
    zerolost_sqlx::url_requires_tls(url)
}
