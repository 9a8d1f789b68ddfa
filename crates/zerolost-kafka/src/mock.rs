//! librdkafka's in-process mock cluster: Kafka's protocol without a server, for fast tests
//! and the zero-setup demo. Not a durability test: the real-broker tests are.

use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use zerolost_core::Error;

use crate::{KafkaConfig, KafkaError};

type Reply = Sender<Result<(), Error>>;

enum Command {
    CreateTopic(String, i32, i32, Reply),
    BrokerDown(i32, Reply),
    BrokerUp(i32, Reply),
    ClearProduceErrors(Reply),
    ProduceErrors(Vec<RDKafkaRespErr>, Reply),
    TopicError(String, RDKafkaRespErr, Reply),
    GroupCoordinator(String, i32, Reply),
    RoundTrip(i32, std::time::Duration, Reply),
    Stop,
}

/// A mock Kafka cluster, alive until this value is dropped. The cluster lives on a thread
/// of its own (librdkafka's handle is tied to one), so this handle is `Send + Sync`.
///
/// ```
/// use zerolost_kafka::mock::MockKafka;
/// let kafka = MockKafka::start(3).unwrap();
/// kafka.create_topic("orders", 3, 3).unwrap();
/// let config = kafka.config(); // bootstrap servers of the mock brokers
/// # let _ = config;
/// ```
pub struct MockKafka {
    bootstrap: String,
    commands: Mutex<Sender<Command>>,
    owner: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

fn mock_error(operation: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> Error {
    move |source| KafkaError::Client { operation, source }.into()
}

impl MockKafka {
    /// Starts `brokers` mock brokers.
    pub fn start(brokers: i32) -> Result<Self, Error> {
        let (commands, inbox) = channel::<Command>();
        let (started, bootstrap) = channel::<Result<String, Error>>();
        let owner = std::thread::Builder::new()
            .name("zerolost-mock-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = started.send(Err(mock_error("start the mock cluster")(e)));
                        return;
                    }
                };
                let _ = started.send(Ok(cluster.bootstrap_servers()));
                for command in inbox {
                    match command {
                        Command::CreateTopic(name, partitions, replication, reply) => {
                            let _ = reply.send(
                                cluster
                                    .create_topic(&name, partitions, replication)
                                    .map_err(mock_error("create a mock topic")),
                            );
                        }
                        Command::BrokerDown(id, reply) => {
                            let _ = reply.send(
                                cluster
                                    .broker_down(id)
                                    .map_err(mock_error("take a mock broker down")),
                            );
                        }
                        Command::BrokerUp(id, reply) => {
                            let _ = reply.send(
                                cluster
                                    .broker_up(id)
                                    .map_err(mock_error("bring a mock broker up")),
                            );
                        }
                        Command::ClearProduceErrors(reply) => {
                            cluster.clear_request_errors(RDKafkaApiKey::Produce);
                            let _ = reply.send(Ok(()));
                        }
                        Command::ProduceErrors(errors, reply) => {
                            cluster.request_errors(RDKafkaApiKey::Produce, &errors);
                            let _ = reply.send(Ok(()));
                        }
                        Command::TopicError(topic, error, reply) => {
                            let _ = reply.send(
                                cluster
                                    .topic_error(&topic, error)
                                    .map_err(mock_error("set a mock topic error")),
                            );
                        }
                        Command::GroupCoordinator(group, broker, reply) => {
                            let _ = reply.send(
                                cluster
                                    .coordinator(MockCoordinator::Group(group), broker)
                                    .map_err(mock_error("set a mock group coordinator")),
                            );
                        }
                        Command::RoundTrip(broker, delay, reply) => {
                            let _ = reply.send(
                                cluster
                                    .broker_round_trip_time(broker, delay)
                                    .map_err(mock_error("set a mock broker's round trip")),
                            );
                        }
                        Command::Stop => break,
                    }
                }
            })
            .map_err(|e| Error::backend("start the mock cluster thread", false, e))?;
        let bootstrap = bootstrap
            .recv()
            .map_err(|e| Error::backend("start the mock cluster", false, e))??;
        Ok(Self {
            bootstrap,
            commands: Mutex::new(commands),
            owner: Some(owner),
        })
    }

    fn call(&self, command: impl FnOnce(Reply) -> Command) -> Result<(), Error> {
        let (reply, answer) = channel();
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(command(reply))
            .map_err(|e| Error::backend("mock cluster", false, e.to_string()))?;
        answer
            .recv()
            .map_err(|e| Error::backend("mock cluster", false, e))?
    }

    /// The brokers' `host:port` list.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Client settings pointing at this cluster, with one request in flight per
    /// connection.
    ///
    /// The mock brokers do not check an idempotent producer's sequence numbers (librdkafka's
    /// mock validates them for transactional producers only), while librdkafka relies on the
    /// broker doing so: when a later request of a partition succeeds after an earlier one
    /// failed, it counts the earlier messages as stored ("implicitly acked"). A real broker
    /// would have refused the later request (`OUT_OF_ORDER_SEQUENCE_NUMBER`); the mock stores
    /// it, so with several requests in flight an injected request error would confirm
    /// messages the mock never stored. One request in flight closes that gap.
    ///
    /// Consumers get a 6 s session (heartbeat every second): the mock's group coordinator
    /// sometimes holds a rebalance until a member's session expires (seen: a second member
    /// joining stalled the group for the default 45 s), and a short session bounds that.
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig::new(self.bootstrap.clone())
            .set("max.in.flight.requests.per.connection", "1")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, partitions: i32, replication: i32) -> Result<(), Error> {
        let name = name.to_owned();
        self.call(|reply| Command::CreateTopic(name, partitions, replication, reply))
    }

    /// Takes broker `id` (1-based) down: its connections drop and it accepts none.
    pub fn broker_down(&self, id: i32) -> Result<(), Error> {
        self.call(|reply| Command::BrokerDown(id, reply))
    }

    /// Brings broker `id` back.
    pub fn broker_up(&self, id: i32) -> Result<(), Error> {
        self.call(|reply| Command::BrokerUp(id, reply))
    }

    /// Makes the next produce requests fail with `errors`, one per request, in order.
    /// They stay queued until produce requests take them (see
    /// [`clear_produce_errors`](Self::clear_produce_errors)).
    pub fn fail_produce_requests(&self, errors: &[RDKafkaRespErr]) -> Result<(), Error> {
        let errors = errors.to_vec();
        self.call(|reply| Command::ProduceErrors(errors, reply))
    }

    /// Drops the produce errors no request has taken yet.
    pub fn clear_produce_errors(&self) -> Result<(), Error> {
        self.call(Command::ClearProduceErrors)
    }
}

impl MockKafka {
    /// Makes metadata requests for `topic` answer `error` (e.g. `UNKNOWN_TOPIC_OR_PART`:
    /// the mock brokers otherwise create any topic on first use).
    pub fn topic_error(&self, topic: &str, error: RDKafkaRespErr) -> Result<(), Error> {
        let topic = topic.to_owned();
        self.call(|reply| Command::TopicError(topic, error, reply))
    }

    /// Makes broker `broker` the coordinator of consumer group `group`.
    pub fn set_group_coordinator(&self, group: &str, broker: i32) -> Result<(), Error> {
        let group = group.to_owned();
        self.call(|reply| Command::GroupCoordinator(group, broker, reply))
    }

    /// Delays every response of broker `broker` by `delay` (several requests then overlap).
    pub fn set_round_trip(&self, broker: i32, delay: std::time::Duration) -> Result<(), Error> {
        self.call(|reply| Command::RoundTrip(broker, delay, reply))
    }

    /// Makes `topic` unknown to the cluster, as on brokers without auto-creation.
    pub fn forbid_topic(&self, topic: &str) -> Result<(), Error> {
        self.topic_error(
            topic,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        let _ = self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Command::Stop);
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}
