//! `chaos --tls`: every link of the run over TLS with the test CA of
//! `scripts/services/certs.sh`: the database (`verify-full` / `VERIFY_IDENTITY`), Redis
//! (`rediss`, its ACL user), RabbitMQ (`amqps`), Kafka (`SASL_SSL` with SCRAM-SHA-512).
//! Toxiproxy relays the TLS bytes; the test certificate names 127.0.0.1, so a proxied link
//! verifies as a direct one.

use zerolost_core::{Error, TlsFiles};

use super::spec::ChaosBackend;

/// The test CA a `--tls` run trusts.
#[derive(Debug, Clone)]
pub struct Tls {
    ca: String,
}

impl Tls {
    /// The run's TLS, when `--tls` is given; not on RocketMQ (its faults strike the plaintext
    /// test broker).
    pub fn of(on: bool, backend: ChaosBackend) -> Result<Option<Self>, Error> {
        if !on {
            return Ok(None);
        }
        if backend == ChaosBackend::Rocketmq {
            return Err(Error::Config(
                "--tls: the RocketMQ chaos run strikes the plaintext test broker (rocketmq.sh kill); \
                 RocketMQ over TLS is tested by zerolost-rocketmq's tests/acl.rs and its TLS \
                 conformance suite"
                    .into(),
            ));
        }
        let ca = zerolost_testkit::tls::file("ca.crt").map_err(Error::Config)?;
        Ok(Some(Self {
            ca: ca.display().to_string(),
        }))
    }

    /// The database URL with the server's certificate and name verified.
    pub fn db_url(&self, plain: &str) -> String {
        if plain.starts_with("mysql") {
            format!("{plain}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", self.ca)
        } else {
            format!("{plain}?sslmode=verify-full&sslrootcert={}", self.ca)
        }
    }

    /// The test Redis's TLS port, as its ACL user.
    pub fn redis_url() -> String {
        zerolost_testkit::service_url(
            "ZEROLOST_REDIS_TLS_URL",
            "rediss://zerolost:zerolost-secret@127.0.0.1:56380",
        )
    }

    /// The test RabbitMQ's amqps listener.
    pub fn amqp_url() -> String {
        zerolost_testkit::service_url(
            "ZEROLOST_AMQPS_URL",
            "amqps://zerolost:zerolost@127.0.0.1:55675/zerolost",
        )
    }

    /// The 3-node test cluster's `SASL_SSL` listeners.
    pub fn kafka_cluster() -> String {
        zerolost_testkit::service_url(
            "ZEROLOST_KAFKA_SASL_CLUSTER",
            "127.0.0.1:29392,127.0.0.1:29393,127.0.0.1:29394",
        )
    }

    /// The librdkafka settings of the `SASL_SSL` link, as `[kafka.client]` entries.
    pub fn kafka_client(&self) -> String {
        format!(
            ", \"security.protocol\" = \"SASL_SSL\", \"sasl.mechanism\" = \"SCRAM-SHA-512\", \
             \"sasl.username\" = \"zerolost\", \"sasl.password\" = \"zerolost-secret\", \
             \"ssl.ca.location\" = {:?}",
            self.ca
        )
    }

    /// The `[<section>.tls]` table trusting the CA.
    pub fn section(&self, section: &str) -> String {
        format!("[{section}.tls]\nca_file = {:?}\n", self.ca)
    }

    /// The files of the link, for this process's own clients.
    pub fn files(&self) -> TlsFiles {
        TlsFiles::default().ca(&self.ca)
    }
}
