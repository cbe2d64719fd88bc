package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// The directions, as a failure names them.
const (
	goEvents          = "go->topicbus events"
	goRequests        = "go->topicbus requests"
	topicbusRequests  = "topicbus->go requests"
	topicbusEvents    = "topicbus->go events"
	maxFailuresListed = 20
)

// Summary is what a run reports.
type Summary struct {
	Peer      string `json:"peer"`
	Direction string `json:"direction"`
	// Sent: events or requests this peer sent.
	Sent int `json:"sent"`
	// Handled: distinct events or requests handled here, or replies
	// received (request).
	Handled    int `json:"handled"`
	Duplicates int `json:"duplicates"`
	// Unmatched: replies with a correlation id this run never sent.
	Unmatched int `json:"unmatched"`
	// WithReplyTo: requests that named a `reply_to` topic, which the Go
	// bus does not read (serve).
	WithReplyTo int      `json:"with_reply_to"`
	Failures    []string `json:"failures"`
	// Records: what was sent (publish), for the other side to check.
	Records []Record `json:"records,omitempty"`

	mu sync.Mutex
}

// Record is one sent event.
type Record struct {
	ID        string `json:"id"`
	Seq       int    `json:"seq"`
	Timestamp int64  `json:"timestamp"`
}

func (s *Summary) fail(id string, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	message := fmt.Sprintf("%s: %s: %s", s.Direction, id, fmt.Sprintf(format, args...))
	logf("FAIL %s", message)
	if len(s.Failures) < maxFailuresListed {
		s.Failures = append(s.Failures, message)
	} else if len(s.Failures) == maxFailuresListed {
		s.Failures = append(s.Failures, "... more failures on stderr")
	}
}

// timestamp is what the Go services put in Event.Timestamp: UnixNano in
// most, Unix seconds in the models registry, 0 where nobody set it.
func timestamp(seq int) int64 {
	switch seq % 3 {
	case 0:
		return time.Now().UnixNano()
	case 1:
		return time.Now().Unix()
	default:
		return 0
	}
}

// Payloads, with the Go services' JSON field names.

type ChunkCreated struct {
	ChunkID string `json:"chunk_id"`
	Text    string `json:"text"`
	Seq     int    `json:"seq"`
}

type EmbedRequest struct {
	Texts []string `json:"texts"`
}

type EmbedResponse struct {
	Embeddings [][]float32 `json:"embeddings"`
	Error      string      `json:"error,omitempty"`
}

type RerankRequest struct {
	Query     string   `json:"query"`
	Documents []string `json:"documents"`
	TopK      int      `json:"top_k"`
}

type RankedResult struct {
	Index int     `json:"index"`
	Score float64 `json:"score"`
}

type RerankResponse struct {
	Results []RankedResult `json:"results"`
	Error   string         `json:"error,omitempty"`
}

type StoreCreated struct {
	Name      string `json:"name"`
	Seq       int64  `json:"seq"`
	SizeBytes int64  `json:"size_bytes"`
}

// Text of the seq-th event or request: JSON escapes (`<>&` as \u003c...)
// and non-ASCII, so the other side reads what Go's encoder wrote.
func chunkText(seq int) string { return fmt.Sprintf("chunk %d <b>&</b> ü", seq) }

// publish sends count events as the Go bus's Publish did, one synchronous
// send at a time.
func publish(bus *Bus, topic string, count int) *Summary {
	s := &Summary{Direction: goEvents}
	if err := bus.EnsureTopic(topic, 3); err != nil {
		s.fail("-", "%v", err)
		return s
	}
	for seq := 0; seq < count; seq++ {
		id := newID()
		event := Event{
			ID:        id,
			Type:      topic,
			Source:    "go-peer",
			Timestamp: timestamp(seq),
			Payload:   ChunkCreated{ChunkID: fmt.Sprintf("chunk-%d", seq), Text: chunkText(seq), Seq: seq},
		}
		if err := bus.Publish(topic, event); err != nil {
			s.fail(id, "seq %d not sent: %v", seq, err)
			continue
		}
		s.Sent++
		s.Records = append(s.Records, Record{ID: id, Seq: seq, Timestamp: event.Timestamp})
	}
	return s
}

// request sends count embed requests as the Go bus's Request did: a
// pending channel per correlation id, the replies read from
// `{topic}.response` in the service's consumer group, a timeout per call.
// Each reply must carry the embedding topicbus's handler computes.
func request(ctx context.Context, bus *Bus, topic, group string, count, concurrency int, timeout time.Duration) *Summary {
	s := &Summary{Direction: goRequests}
	responseTopic := topic + ".response"
	var mu sync.Mutex
	pending := make(map[string]chan Event)
	answered := make(map[string]bool)
	ready := make(chan struct{})
	consumeCtx, stopConsuming := context.WithCancel(ctx)
	defer stopConsuming()
	consumed := make(chan error, 1)
	go func() {
		consumed <- bus.Consume(consumeCtx, responseTopic, group, ready, func(r Received) {
			var event Event
			if err := json.Unmarshal(r.Value, &event); err != nil {
				s.fail(r.Name(""), "reply is not a Go Event: %v: %s", err, r.Value)
				return
			}
			if header := r.Headers["correlation_id"]; header != event.CorrelationID {
				s.fail(event.ID, "correlation_id header %q differs from the envelope's %q", header, event.CorrelationID)
			}
			mu.Lock()
			defer mu.Unlock()
			if answered[event.CorrelationID] {
				s.Duplicates++
				return
			}
			ch, ok := pending[event.CorrelationID]
			if !ok {
				s.Unmatched++
				return
			}
			answered[event.CorrelationID] = true
			ch <- event
		})
	}()
	select {
	case <-ready:
	case err := <-consumed:
		s.fail("-", "reading %s: %v", responseTopic, err)
		return s
	case <-ctx.Done():
		s.fail("-", "%s never assigned", responseTopic)
		return s
	}

	seqs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range seqs {
				one(bus, s, topic, seq, timeout, &mu, pending)
			}
		}()
	}
	for seq := 0; seq < count; seq++ {
		seqs <- seq
	}
	close(seqs)
	wg.Wait()
	return s
}

func one(bus *Bus, s *Summary, topic string, seq int, timeout time.Duration, mu *sync.Mutex, pending map[string]chan Event) {
	id := newID()
	texts := []string{chunkText(seq), fmt.Sprintf("query %d", seq)}
	reply := make(chan Event, 1)
	mu.Lock()
	pending[id] = reply
	mu.Unlock()
	defer func() {
		mu.Lock()
		delete(pending, id)
		mu.Unlock()
	}()
	err := bus.Publish(topic, Event{
		ID: id, Type: topic, Source: "go-peer", Timestamp: timestamp(seq),
		CorrelationID: id, Payload: EmbedRequest{Texts: texts},
	})
	if err != nil {
		s.fail(id, "request %d not sent: %v", seq, err)
		return
	}
	s.mu.Lock()
	s.Sent++
	s.mu.Unlock()
	select {
	case <-time.After(timeout):
		s.fail(id, "request %d: no reply on %s.response within %v", seq, topic, timeout)
	case event := <-reply:
		var response EmbedResponse
		if err := unmarshalPayload(event.Payload, &response); err != nil {
			s.fail(id, "request %d: reply payload is not an EmbedResponse: %v", seq, err)
			return
		}
		if event.Timestamp < 1e18 {
			s.fail(id, "request %d: reply timestamp %d is not Unix nanoseconds", seq, event.Timestamp)
		}
		if response.Error != "" || len(response.Embeddings) != len(texts) {
			s.fail(id, "request %d: reply %+v", seq, response)
			return
		}
		for i, text := range texts {
			want := []float32{float32(len([]rune(text))), float32(i)}
			if fmt.Sprint(response.Embeddings[i]) != fmt.Sprint(want) {
				s.fail(id, "request %d: embedding %d is %v, want %v", seq, i, response.Embeddings[i], want)
			}
		}
		s.mu.Lock()
		s.Handled++
		s.mu.Unlock()
	}
}

// serve answers rerank requests as a Go bus service did: the Event read in
// the service's consumer group, the reply published to `{topic}.response`
// with the request's correlation id. A `reply_to` header is not read: the
// Go bus knew none. Returns once count distinct requests were answered.
func serve(ctx context.Context, bus *Bus, topic, group string, count int) *Summary {
	s := &Summary{Direction: topicbusRequests}
	responseTopic := topic + ".response"
	if err := bus.EnsureTopic(responseTopic, 3); err != nil {
		s.fail("-", "%v", err)
		return s
	}
	seen := make(map[string]bool)
	var mu sync.Mutex
	done, finish := context.WithCancel(ctx)
	defer finish()
	ready := make(chan struct{})
	go announceReady(ready, done)
	err := bus.Consume(done, topic, group, ready, func(r Received) {
		var event Event
		if err := json.Unmarshal(r.Value, &event); err != nil {
			s.fail(r.Name(""), "request is not a Go Event: %v: %s", err, r.Value)
			return
		}
		if !checkEnvelope(s, event, r, topic) {
			return
		}
		mu.Lock()
		if seen[event.ID] {
			s.Duplicates++
			mu.Unlock()
			return
		}
		seen[event.ID] = true
		if r.Headers["reply_to"] != "" {
			s.WithReplyTo++
		}
		mu.Unlock()
		var req RerankRequest
		if err := unmarshalPayload(event.Payload, &req); err != nil {
			s.fail(event.ID, "payload is not a RerankRequest: %v", err)
			return
		}
		reply := Event{
			ID: event.ID + "-response", Type: responseTopic, Source: "go-peer",
			Timestamp: time.Now().UnixNano(), CorrelationID: event.CorrelationID,
			Payload: RerankResponse{Results: rerank(req)},
		}
		if err := bus.Publish(responseTopic, reply); err != nil {
			s.fail(event.ID, "reply not sent: %v", err)
			return
		}
		mu.Lock()
		s.Handled++
		if s.Handled >= count {
			finish()
		}
		mu.Unlock()
	})
	if err != nil {
		s.fail("-", "%v", err)
	}
	if s.Handled < count {
		s.fail("-", "answered %d of %d requests before the hang guard", s.Handled, count)
	}
	return s
}

// rerank scores each document by its length in characters and keeps the
// top_k best, so the requester can check the answer.
func rerank(req RerankRequest) []RankedResult {
	results := make([]RankedResult, len(req.Documents))
	for i, doc := range req.Documents {
		results[i] = RankedResult{Index: i, Score: float64(len([]rune(doc))) / 4}
	}
	sort.SliceStable(results, func(a, b int) bool { return results[a].Score > results[b].Score })
	if req.TopK < len(results) {
		results = results[:req.TopK]
	}
	return results
}

// consume reads topicbus's events into the Go struct, as a Go bus
// subscriber would: json.Unmarshal into Event (an RFC 3339 text timestamp
// would fail here), the payload into its typed struct. Returns once count
// distinct events were read.
func consume(ctx context.Context, bus *Bus, topic, group string, count int, source string) *Summary {
	s := &Summary{Direction: topicbusEvents}
	seen := make(map[string]bool)
	var mu sync.Mutex
	done, finish := context.WithCancel(ctx)
	defer finish()
	ready := make(chan struct{})
	go announceReady(ready, done)
	err := bus.Consume(done, topic, group, ready, func(r Received) {
		var event Event
		if err := json.Unmarshal(r.Value, &event); err != nil {
			s.fail(r.Name(""), "not a Go Event: %v: %s", err, r.Value)
			return
		}
		if !checkEnvelope(s, event, r, topic) {
			return
		}
		if event.Source != source {
			s.fail(event.ID, "source %q, want %q", event.Source, source)
		}
		if event.CorrelationID != "" {
			s.fail(event.ID, "an event with correlation_id %q", event.CorrelationID)
		}
		var store StoreCreated
		if err := unmarshalPayload(event.Payload, &store); err != nil {
			s.fail(event.ID, "payload is not a StoreCreated: %v", err)
			return
		}
		want := StoreCreated{Name: storeName(store.Seq), Seq: store.Seq, SizeBytes: store.Seq * 1_000_003}
		if store != want {
			s.fail(event.ID, "payload %+v, want %+v", store, want)
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[event.ID] {
			s.Duplicates++
			return
		}
		seen[event.ID] = true
		s.Handled++
		if s.Handled >= count {
			finish()
		}
	})
	if err != nil {
		s.fail("-", "%v", err)
	}
	if s.Handled < count {
		s.fail("-", "read %d of %d events before the hang guard", s.Handled, count)
	}
	return s
}

func storeName(seq int64) string { return fmt.Sprintf("store %d <b>&</b> ü", seq) }

// checkEnvelope checks what the Go bus's readers relied on: the event has
// an id (else false: it cannot be counted), its type names its topic, the
// record is keyed by the event id, and the timestamp is Unix nanoseconds of
// a plausible year.
func checkEnvelope(s *Summary, event Event, r Received, topic string) bool {
	if event.ID == "" {
		s.fail(r.Name(""), "event without id: %s", r.Value)
		return false
	}
	if string(r.Key) != event.ID {
		s.fail(event.ID, "record key %q is not the event id", r.Key)
	}
	if event.Type != topic {
		s.fail(event.ID, "type %q, want %q", event.Type, topic)
	}
	year := time.Unix(0, event.Timestamp).UTC().Year()
	if event.Timestamp <= 0 || year < 2020 || year > 2200 {
		s.fail(event.ID, "timestamp %d is not Unix nanoseconds", event.Timestamp)
	}
	return true
}
