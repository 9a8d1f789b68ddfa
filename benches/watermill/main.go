// The peer side of zerolost's relay benchmark: Watermill's outbox (the SQL publisher
// writing enveloped messages to PostgreSQL, the Forwarder reading them back with the SQL
// subscriber and publishing them with Watermill's Kafka or AMQP publisher), on the same
// PostgreSQL and broker, with the same message count and payload as `zerolost-lab bench`.
//
// It enqueues -messages rows first (not timed), then starts the Forwarder and times how
// long it takes until the broker has confirmed every message. Both publishers run with
// their strongest confirms, as zerolost's do: Kafka acks=all + idempotence, AMQP
// publisher confirms. One JSON line on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
)

// counting wraps the broker publisher: the run ends when it has confirmed every message.
type counting struct {
	message.Publisher
	done   atomic.Int64
	target int64
	finish chan struct{}
}

func (c *counting) Publish(topic string, messages ...*message.Message) error {
	if err := c.Publisher.Publish(topic, messages...); err != nil {
		return err
	}
	if c.done.Add(int64(len(messages))) == c.target {
		close(c.finish)
	}
	return nil
}

type result struct {
	Peer        string  `json:"peer"`
	Broker      string  `json:"broker"`
	Messages    int     `json:"messages"`
	BatchSize   int     `json:"subscribe_batch_size"`
	EnqueueS    float64 `json:"enqueue_s"`
	ForwardS    float64 `json:"forward_s"`
	ForwardPerS float64 `json:"forward_per_s"`
}

func main() {
	pgURL := flag.String("pg", "postgres://zerolost:zerolost@127.0.0.1:55432/zerolost", "PostgreSQL URL")
	broker := flag.String("broker", "kafka", "kafka or amqp")
	brokers := flag.String("kafka", "127.0.0.1:19092", "Kafka bootstrap broker")
	amqpURL := flag.String("amqp", "amqp://zerolost:zerolost@127.0.0.1:55672/zerolost", "AMQP URL")
	messages := flag.Int("messages", 20000, "messages to forward")
	batch := flag.Int("batch", 100, "SQL subscriber batch size (Watermill's default is 100)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the forwarding phase to this file")
	flag.Parse()

	ctx := context.Background()
	logger := watermill.NopLogger{}
	pool, err := pgxpool.New(ctx, *pgURL)
	must(err, "connect to PostgreSQL")
	defer pool.Close()

	run := fmt.Sprintf("wmbench_%d_%d", os.Getpid(), time.Now().Unix())
	outboxTopic := run + "_outbox"
	destination := run + "_orders"

	target, closeTarget := brokerPublisher(*broker, *brokers, *amqpURL, destination, logger)
	defer closeTarget()

	schema := wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: *batch}
	sqlPublisher, err := wsql.NewPublisher(wsql.BeginnerFromPgx(pool), wsql.PublisherConfig{
		SchemaAdapter:        schema,
		AutoInitializeSchema: true,
	}, logger)
	must(err, "SQL publisher")
	outbox := forwarder.NewPublisher(sqlPublisher, forwarder.PublisherConfig{ForwarderTopic: outboxTopic})

	// Enqueue: 100 messages per insert, as zerolost's bench does per transaction.
	started := time.Now()
	for i := 0; i < *messages; i += 100 {
		var chunk []*message.Message
		for j := i; j < i+100 && j < *messages; j++ {
			payload := fmt.Sprintf(`{"order":%d,"amount":1250}`, j)
			chunk = append(chunk, message.NewMessage(watermill.NewUUID(), []byte(payload)))
		}
		must(outbox.Publish(destination, chunk...), "enqueue")
	}
	enqueued := time.Since(started)

	subscriber, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
		ConsumerGroup:    run,
		SchemaAdapter:    schema,
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
		PollInterval:     10 * time.Millisecond,
	}, logger)
	must(err, "SQL subscriber")
	counter := &counting{Publisher: target, target: int64(*messages), finish: make(chan struct{})}
	fwd, err := forwarder.NewForwarder(subscriber, counter, logger, forwarder.Config{ForwarderTopic: outboxTopic})
	must(err, "forwarder")

	if *cpuProfile != "" {
		file, err := os.Create(*cpuProfile)
		must(err, "profile file")
		must(pprof.StartCPUProfile(file), "start the profile")
		defer pprof.StopCPUProfile()
	}
	started = time.Now()
	go func() {
		if err := fwd.Run(ctx); err != nil {
			log.Fatalf("forwarder: %v", err)
		}
	}()
	select {
	case <-counter.finish:
	case <-time.After(*timeout):
		log.Fatalf("timed out: %d of %d forwarded", counter.done.Load(), *messages)
	}
	forwarded := time.Since(started)
	_ = fwd.Close()

	out, _ := json.Marshal(result{
		Peer:        "watermill",
		Broker:      *broker,
		Messages:    *messages,
		BatchSize:   *batch,
		EnqueueS:    enqueued.Seconds(),
		ForwardS:    forwarded.Seconds(),
		ForwardPerS: float64(*messages) / forwarded.Seconds(),
	})
	fmt.Println(string(out))
}

// brokerPublisher is Watermill's Kafka publisher (sync, acks=all, idempotent) on a fresh
// 3-partition topic, or its AMQP publisher with publisher confirms on a durable queue.
func brokerPublisher(broker, brokers, amqpURL, destination string, logger watermill.LoggerAdapter) (message.Publisher, func()) {
	switch broker {
	case "kafka":
		config := kafka.DefaultSaramaSyncPublisherConfig()
		config.Version = sarama.V2_8_0_0
		config.Producer.RequiredAcks = sarama.WaitForAll
		config.Producer.Idempotent = true
		config.Net.MaxOpenRequests = 1
		admin, err := sarama.NewClusterAdmin([]string{brokers}, config)
		must(err, "Kafka admin")
		must(admin.CreateTopic(destination, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false), "create topic")
		_ = admin.Close()
		publisher, err := kafka.NewPublisher(kafka.PublisherConfig{
			Brokers:               []string{brokers},
			Marshaler:             kafka.DefaultMarshaler{},
			OverwriteSaramaConfig: config,
		}, logger)
		must(err, "Kafka publisher")
		return publisher, func() { _ = publisher.Close() }
	case "amqp":
		config := amqp.NewDurableQueueConfig(amqpURL)
		config.Publish.ConfirmDelivery = true
		publisher, err := amqp.NewPublisher(config, logger)
		must(err, "AMQP publisher")
		return publisher, func() { _ = publisher.Close() }
	default:
		log.Fatalf("unknown -broker %q (kafka or amqp)", broker)
		return nil, nil
	}
}

func must(err error, what string) {
	if err != nil {
		log.Fatalf("%s: %v", what, err)
	}
}
