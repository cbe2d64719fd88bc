// Command gopeer speaks Kafka as the Go bus of the rice search services did
// (Sarama, the JSON Event envelope with an int64 timestamp, records keyed by
// event id, only a `correlation_id` header, replies on `{topic}.response`),
// so that topicbus's Go-envelope mode can be tried against it. Each run
// drives one direction and ends with one line on stdout:
//
//	summary {"peer":"go","direction":...,"sent":N,"handled":N,...}
//
// Consumers print `ready` first, once they read every partition. Every
// failure names the direction and the message; the exit status is 1 if
// there was any.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	command := os.Args[1]
	flags := flag.NewFlagSet(command, flag.ExitOnError)
	brokers := flags.String("brokers", "", "bootstrap servers, comma-separated")
	topic := flags.String("topic", "", "the topic to write to or read from")
	group := flags.String("group", "", "consumer group (consume, serve, request)")
	count := flags.Int("count", 100, "messages to send or to wait for")
	concurrency := flags.Int("concurrency", 8, "requests in flight (request)")
	timeout := flags.Duration("timeout", 60*time.Second, "hang guard: give up and report after this long")
	requestTimeout := flags.Duration("request-timeout", 30*time.Second, "the Go bus's per-request timeout (request)")
	source := flags.String("expect-source", "", "the source topicbus's events must name (consume)")
	flags.Parse(os.Args[2:])
	if *brokers == "" || *topic == "" {
		usage()
	}

	bus, err := connect(strings.Split(*brokers, ","))
	if err != nil {
		fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var summary *Summary
	switch command {
	case "publish":
		summary = publish(bus, *topic, *count)
	case "request":
		summary = request(ctx, bus, *topic, *group, *count, *concurrency, *requestTimeout)
	case "serve":
		summary = serve(ctx, bus, *topic, *group, *count)
	case "consume":
		summary = consume(ctx, bus, *topic, *group, *count, *source)
	default:
		usage()
	}
	summary.Peer = "go"
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprint(out, "summary ")
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(summary); err != nil {
		fatal(err)
	}
	out.Flush()
	if len(summary.Failures) > 0 {
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: gopeer publish|request|serve|consume -brokers B -topic T [-group G] [-count N]")
	os.Exit(2)
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "gopeer: %v\n", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gopeer: "+format+"\n", args...)
}

// announceReady tells the parent process that a consumer reads every
// partition, so what it publishes from now on is seen.
func announceReady(ready <-chan struct{}, ctx context.Context) bool {
	select {
	case <-ready:
		fmt.Println("ready")
		return true
	case <-ctx.Done():
		return false
	}
}
