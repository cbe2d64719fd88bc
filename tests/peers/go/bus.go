package main

// The Go bus's Kafka side as its code (internal/bus/kafka.go) wrote and read
// records: the same Event struct, producer settings, record key and header.
// Only what a test needs is added: topic creation (the test broker does not
// auto-create topics, the Go bus relied on auto-creation) and a signal once
// a consumer group's partitions are being read (the Go bus's own consumer
// started at the newest offset with no such signal, so its first messages
// could be missed).

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Event is the Go bus's event, field for field (internal/bus/bus.go).
type Event struct {
	ID            string `json:"id"`
	Type          string `json:"type"`
	Source        string `json:"source"`
	Timestamp     int64  `json:"timestamp"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Payload       any    `json:"payload"`
}

// Bus holds Sarama clients configured as the Go bus configured its one.
// The producer has a client of its own: the Go bus's producer and consumer
// group shared one, so their requests queued on the same connection to a
// broker, and a reply sent from a handler waited behind the consumer's
// fetch, which Kafka holds for up to Consumer.MaxWaitTime (500 ms) when no
// new data arrives. A responder built that way answered about 4 requests a
// second here; records on the wire are the same either way.
type Bus struct {
	client   sarama.Client
	consumer sarama.Client
	producer sarama.SyncProducer
	admin    sarama.ClusterAdmin
}

func connect(brokers []string) (*Bus, error) {
	config := goBusConfig()
	client, err := sarama.NewClient(brokers, config)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	consumer, err := sarama.NewClient(brokers, config)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		consumer.Close()
		client.Close()
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		producer.Close()
		consumer.Close()
		client.Close()
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	return &Bus{client: client, consumer: consumer, producer: producer, admin: admin}, nil
}

// goBusConfig is the Sarama configuration of the Go bus's NewKafkaBus.
func goBusConfig() *sarama.Config {
	config := sarama.NewConfig()
	config.Version = sarama.V2_8_0_0
	config.ClientID = "rice-search-bus"
	config.Producer.Return.Successes = true
	config.Producer.Return.Errors = true
	config.Producer.Retry.Max = 3
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	config.Consumer.Offsets.Initial = sarama.OffsetNewest
	config.Consumer.Return.Errors = true
	config.Net.DialTimeout = 10 * time.Second
	config.Net.ReadTimeout = 10 * time.Second
	config.Net.WriteTimeout = 10 * time.Second
	return config
}

func (b *Bus) Close() {
	b.producer.Close()
	b.consumer.Close()
	b.client.Close()
}

// Publish writes an event as the Go bus's KafkaBus.Publish did: the JSON of
// the Event as the value, its id as the key, and only a `correlation_id`
// header, when the event has one.
func (b *Bus) Publish(topic string, event Event) error {
	data, err := json.Marshal(event)
	if err != nil {
		return fmt.Errorf("marshal event: %w", err)
	}
	msg := &sarama.ProducerMessage{
		Topic: topic,
		Value: sarama.ByteEncoder(data),
		Key:   sarama.StringEncoder(event.ID),
	}
	if event.CorrelationID != "" {
		msg.Headers = []sarama.RecordHeader{{Key: []byte("correlation_id"), Value: []byte(event.CorrelationID)}}
	}
	_, _, err = b.producer.SendMessage(msg)
	return err
}

// EnsureTopic creates topic with partitions when it does not exist.
func (b *Bus) EnsureTopic(topic string, partitions int32) error {
	err := b.admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return b.client.RefreshMetadata(topic)
}

// Received is one record as a consumer group handler sees it.
type Received struct {
	Key       []byte
	Value     []byte
	Headers   map[string]string
	Partition int32
	Offset    int64
}

// Name is how a failure names the record: its event id, else its place.
func (r Received) Name(eventID string) string {
	if eventID != "" {
		return eventID
	}
	return fmt.Sprintf("partition %d offset %d", r.Partition, r.Offset)
}

// Consume reads topic in consumer group `group`, starting at the newest
// offset for a new group, and calls handle for each record, marking it
// after handle returned, as the Go bus did. ready is closed once every
// partition of the topic is being read at its start offset. Consume
// returns when ctx ends.
func (b *Bus) Consume(ctx context.Context, topic, group string, ready chan<- struct{}, handle func(Received)) error {
	partitions, err := b.consumer.Partitions(topic)
	if err != nil {
		return fmt.Errorf("partitions of %s: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerGroupFromClient(group, b.consumer)
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", group, err)
	}
	defer consumer.Close()
	go func() {
		for err := range consumer.Errors() {
			logf("consumer group %s: %v", group, err)
		}
	}()
	handler := &groupHandler{partitions: len(partitions), ready: ready, handle: handle}
	for ctx.Err() == nil {
		if err := consumer.Consume(ctx, []string{topic}, handler); err != nil && ctx.Err() == nil {
			return fmt.Errorf("consume %s: %w", topic, err)
		}
	}
	return nil
}

type groupHandler struct {
	partitions int
	ready      chan<- struct{}
	handle     func(Received)

	mu      sync.Mutex
	started int
	once    sync.Once
}

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *groupHandler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	// Sarama calls this once the claim's partition consumer has resolved
	// its start offset: from then on nothing published is missed.
	h.mu.Lock()
	h.started++
	if h.started >= h.partitions {
		h.once.Do(func() { close(h.ready) })
	}
	h.mu.Unlock()
	for {
		select {
		case <-session.Context().Done():
			return nil
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			headers := make(map[string]string, len(msg.Headers))
			for _, header := range msg.Headers {
				headers[string(header.Key)] = string(header.Value)
			}
			h.handle(Received{Key: msg.Key, Value: msg.Value, Headers: headers, Partition: msg.Partition, Offset: msg.Offset})
			session.MarkMessage(msg, "")
		}
	}
}

// newID returns a random (version 4) UUID, as the Go services used for
// event and correlation ids.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// unmarshalPayload turns an Event's decoded `any` payload into a typed
// struct, as the Go services' handlers did.
func unmarshalPayload(payload any, target any) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, target)
}
