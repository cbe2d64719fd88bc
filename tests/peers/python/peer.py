"""A Kafka client that knows topicbus only from docs/wire.md: CloudEvents 1.0
binary mode (``ce_*`` headers and ``content-type``), requests with
``correlation_id`` and ``reply_to``, replies on the requester's topic,
partition 0.

Each run drives one direction and ends with one line on stdout::

    summary {"peer": "python", "direction": ..., "sent": N, "handled": N, ...}

Consumers print ``ready`` first, once every partition is read from a known
offset. Every failure names the direction and the message; the exit status
is 1 if there was any.
"""

import argparse
import json
import re
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SOURCE = "python-peer"
MAX_FAILURES_LISTED = 20

# A fixed instant to build times from: 2026-12-05T10:00:20Z.
BASE_NANOS = 1_796_464_820 * 1_000_000_000


class Summary:
    def __init__(self, direction):
        self.direction = direction
        self.sent = 0
        self.handled = 0
        self.duplicates = 0
        self.unmatched = 0
        self.failures = []
        self.records = []

    def fail(self, message_id, what):
        message = f"{self.direction}: {message_id}: {what}"
        print(f"peer.py: FAIL {message}", file=sys.stderr, flush=True)
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(message)
        elif len(self.failures) == MAX_FAILURES_LISTED:
            self.failures.append("... more failures on stderr")

    def report(self):
        body = {
            "peer": "python",
            "direction": self.direction,
            "sent": self.sent,
            "handled": self.handled,
            "duplicates": self.duplicates,
            "unmatched": self.unmatched,
            "failures": self.failures,
            "records": self.records,
        }
        print("summary " + json.dumps(body, ensure_ascii=False), flush=True)
        return 1 if self.failures else 0


# `ce_time` as other clients write it: RFC 3339 with any offset, 0 to 9
# digits of fraction, `T`, `t` or a space, `Z` or `z`. Each form returns the
# text and the instant it names, in Unix nanoseconds (the fraction cut to
# the digits written).
def rfc3339(nanos, offset_minutes, digits, separator="T", zone=None):
    whole, fraction = divmod(nanos, 1_000_000_000)
    fraction -= fraction % (10 ** (9 - digits))
    local = datetime.fromtimestamp(whole, timezone.utc) + timedelta(minutes=offset_minutes)
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    if digits:
        text += "." + f"{fraction:09d}"[:digits]
    if zone is not None:
        text += zone
    else:
        sign = "+" if offset_minutes >= 0 else "-"
        hours, minutes = divmod(abs(offset_minutes), 60)
        text += f"{sign}{hours:02d}:{minutes:02d}"
    return text, whole * 1_000_000_000 + fraction


TIME_FORMS = [
    lambda n: rfc3339(n, 120, 3),  # 2026-12-05T12:00:20.617+02:00
    lambda n: rfc3339(n, -300, 0),  # 2026-12-05T05:00:20-05:00
    lambda n: rfc3339(n, 0, 9, "t", "z"),  # lowercase t and z, nanoseconds
    lambda n: rfc3339(n, 120, 0),  # +02:00 without a fraction
    lambda n: rfc3339(n, 330, 1, " "),  # a space, +05:30, one digit
    lambda n: rfc3339(n, 0, 6, "T", "Z"),  # microseconds, Z
    lambda n: rfc3339(n, 0, 2, "T", "-00:00"),  # -00:00: UTC, local offset unknown
]

# `content-type` as other clients write it; None: the header is left out.
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    "application/json;charset=UTF-8",
    None,
]


def headers_for(seq, topic, message_id):
    """The CloudEvents headers of the seq-th message, cycling through the
    time and media-type forms; returns them and the instant ce_time names."""
    text, nanos = TIME_FORMS[seq % len(TIME_FORMS)](BASE_NANOS + seq * 1_234_567_891)
    headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", message_id),
        ("ce_source", SOURCE),
        ("ce_type", topic),
        ("ce_time", text),
    ]
    content_type = CONTENT_TYPES[seq % len(CONTENT_TYPES)]
    if content_type is not None:
        headers.append(("content-type", content_type))
    return headers, text, content_type, nanos


def event_text(seq):
    return f"event {seq} <b>&</b> ü"


def header_map(message):
    return {k: (v.decode("utf-8") if v is not None else None) for k, v in (message.headers() or [])}


def ensure_topic(admin, topic, partitions):
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise


def producer(args):
    return Producer({"bootstrap.servers": args.brokers, "linger.ms": 5, "acks": "all"})


def delivered(summary, message_id):
    def report(error, _message):
        if error is not None:
            summary.fail(message_id, f"not delivered: {error}")
        else:
            summary.sent += 1

    return report


# python -> topicbus events
def publish(args):
    summary = Summary("python->topicbus events")
    admin = AdminClient({"bootstrap.servers": args.brokers})
    ensure_topic(admin, args.topic, 3)
    out = producer(args)
    for seq in range(args.count):
        message_id = str(uuid.uuid4())
        headers, text, content_type, nanos = headers_for(seq, args.topic, message_id)
        value = json.dumps({"seq": seq, "text": event_text(seq)}, ensure_ascii=False).encode()
        out.produce(args.topic, value, key=message_id if seq % 2 else None, headers=headers,
                    on_delivery=delivered(summary, message_id))
        summary.records.append({"id": message_id, "seq": seq, "ce_time": text,
                                "content_type": content_type, "time_nanos": nanos})
        out.poll(0)
    left = out.flush(args.timeout)
    if left:
        summary.fail("-", f"{left} events still unsent after {args.timeout} s")
    return summary


def search_reply(query, limit):
    return {"hits": [f"{query}#{i}" for i in range(limit)]}


# python -> topicbus requests, answered on our own reply topic
def request(args):
    summary = Summary("python->topicbus requests")
    reply_topic = f"topicbus.reply.python-peer.{uuid.uuid4()}"
    admin = AdminClient({"bootstrap.servers": args.brokers})
    ensure_topic(admin, reply_topic, 1)
    replies = Consumer({"bootstrap.servers": args.brokers, "group.id": reply_topic,
                        "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    # The topic is new: reading it from the start misses nothing.
    replies.assign([TopicPartition(reply_topic, 0, OFFSET_BEGINNING)])
    out = producer(args)
    pending = {}
    for seq in range(args.count):
        corr = str(uuid.uuid4())
        headers, _, _, _ = headers_for(seq, args.topic, corr)
        headers += [("correlation_id", corr), ("reply_to", reply_topic)]
        fail = seq % 10 == 9
        body = {"query": f"search {seq} <&> ü", "limit": seq % 7, "fail": fail}
        out.produce(args.topic, json.dumps(body, ensure_ascii=False).encode(), headers=headers,
                    on_delivery=delivered(summary, corr))
        pending[corr] = (seq, body)
        out.poll(0)
    if out.flush(args.timeout):
        summary.fail("-", "requests still unsent")
    answered = set()
    deadline = time.monotonic() + args.timeout
    while len(answered) < len(pending) and time.monotonic() < deadline:
        message = replies.poll(0.5)
        if message is None:
            continue
        if message.error():
            summary.fail("-", f"reading {reply_topic}: {message.error()}")
            continue
        headers = header_map(message)
        corr = headers.get("correlation_id")
        if corr not in pending:
            summary.unmatched += 1
            continue
        if corr in answered:
            summary.duplicates += 1
            continue
        answered.add(corr)
        seq, body = pending[corr]
        check_reply(summary, corr, seq, body, headers, message.value())
    for corr, (seq, _) in pending.items():
        if corr not in answered:
            summary.fail(corr, f"request {seq}: no reply on {reply_topic} within {args.timeout} s")
    replies.close()
    admin.delete_topics([reply_topic])
    return summary


def check_reply(summary, corr, seq, body, headers, value):
    if body["fail"]:
        if headers.get("topicbus_error_kind") != "handler" or not headers.get("topicbus_error"):
            summary.fail(corr, f"request {seq} asked to fail; reply headers {headers}")
            return
        if headers["topicbus_error"] != f"asked to fail: {body['query']}":
            summary.fail(corr, f"request {seq}: error {headers['topicbus_error']!r}")
            return
    else:
        if "topicbus_error" in headers:
            summary.fail(corr, f"request {seq}: error reply {headers['topicbus_error']!r}")
            return
        if headers.get("content-type") != "application/json":
            summary.fail(corr, f"request {seq}: reply content-type {headers.get('content-type')!r}")
        try:
            reply = json.loads(value)
        except ValueError as error:
            summary.fail(corr, f"request {seq}: reply is not JSON ({error}): {value!r}")
            return
        expected = search_reply(body["query"], body["limit"])
        if reply != expected:
            summary.fail(corr, f"request {seq}: reply {reply}, want {expected}")
            return
    for name in ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"):
        if not headers.get(name):
            summary.fail(corr, f"request {seq}: reply without {name}")
    summary.handled += 1


CE_TIME_WRITTEN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def notice(seq):
    return {"seq": seq, "title": f"notice {seq} <b>&</b> ü", "tags": [f"t{seq % 3}", "peers"]}


class Assigned:
    """Puts every partition assigned to this new group at its end offset,
    read before `ready` is printed, so nothing published later is missed."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.done = False

    def __call__(self, consumer, partitions):
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(partition, timeout=10)
            partition.offset = high
        consumer.assign(partitions)
        self.done = True


def group_consumer(args, topic):
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": args.group,
                         "auto.offset.reset": "latest", "enable.auto.commit": True,
                         "fetch.wait.max.ms": 10, "session.timeout.ms": 10000})
    assigned = Assigned(consumer)
    consumer.subscribe([topic], on_assign=assigned)
    deadline = time.monotonic() + args.timeout
    while not assigned.done and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            raise RuntimeError("a message before the assignment")
    if not assigned.done:
        raise RuntimeError(f"no partitions of {topic} assigned within {args.timeout} s")
    print("ready", flush=True)
    return consumer


# topicbus -> python events
def consume(args):
    summary = Summary("topicbus->python events")
    consumer = group_consumer(args, args.topic)
    seen = set()
    deadline = time.monotonic() + args.timeout
    while len(seen) < args.count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            summary.fail("-", f"reading {args.topic}: {message.error()}")
            continue
        headers = header_map(message)
        message_id = headers.get("ce_id") or f"offset {message.partition()}/{message.offset()}"
        if message_id in seen:
            summary.duplicates += 1
            continue
        seen.add(message_id)
        check_event(summary, args, message_id, headers, message.value())
    if len(seen) < args.count:
        summary.fail("-", f"read {len(seen)} of {args.count} events within {args.timeout} s")
    consumer.close()
    return summary


def check_event(summary, args, message_id, headers, value):
    expected = {"ce_specversion": "1.0", "ce_source": args.expect_source, "ce_type": args.topic,
                "content-type": "application/json"}
    for name, want in expected.items():
        if headers.get(name) != want:
            summary.fail(message_id, f"{name} is {headers.get(name)!r}, want {want!r}")
    for name in ("correlation_id", "reply_to"):
        if name in headers:
            summary.fail(message_id, f"an event with {name}")
    written = headers.get("ce_time") or ""
    if not CE_TIME_WRITTEN.match(written):
        summary.fail(message_id, f"ce_time {written!r} is not UTC with milliseconds")
    try:
        body = json.loads(value)
    except ValueError as error:
        summary.fail(message_id, f"not JSON ({error}): {value!r}")
        return
    if not isinstance(body, dict) or body != notice(body.get("seq")):
        summary.fail(message_id, f"payload {body}")
        return
    summary.handled += 1


def lookup_value(key, seq):
    return f"value of {key} ({seq})"


# topicbus -> python requests, answered on the topic `reply_to` names
def serve(args):
    summary = Summary("topicbus->python requests")
    consumer = group_consumer(args, args.topic)
    out = producer(args)
    seen = set()
    deadline = time.monotonic() + args.timeout
    while summary.handled < args.count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        out.poll(0)
        if message is None:
            continue
        if message.error():
            summary.fail("-", f"reading {args.topic}: {message.error()}")
            continue
        headers = header_map(message)
        message_id = headers.get("ce_id") or f"offset {message.partition()}/{message.offset()}"
        corr, reply_to = headers.get("correlation_id"), headers.get("reply_to")
        if message_id in seen:
            summary.duplicates += 1
            continue
        seen.add(message_id)
        if not corr or not reply_to:
            summary.fail(message_id, f"a request without correlation_id or reply_to: {headers}")
            continue
        if headers.get("content-type") != "application/json":
            summary.fail(message_id, f"content-type {headers.get('content-type')!r}")
        try:
            body = json.loads(message.value())
            reply = {"key": body["key"], "seq": body["seq"], "value": lookup_value(body["key"], body["seq"])}
        except (ValueError, KeyError, TypeError) as error:
            summary.fail(message_id, f"request payload ({error}): {message.value()!r}")
            continue
        reply_id = str(uuid.uuid4())
        reply_headers = [
            ("ce_specversion", "1.0"),
            ("ce_id", reply_id),
            ("ce_source", SOURCE),
            ("ce_type", args.topic),
            ("ce_time", datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")),
            ("content-type", "application/json"),
            ("correlation_id", corr),
        ]
        out.produce(reply_to, json.dumps(reply, ensure_ascii=False).encode(), partition=0,
                    headers=reply_headers, on_delivery=delivered(summary, message_id))
        summary.handled += 1
    if out.flush(args.timeout):
        summary.fail("-", "replies still unsent")
    if summary.handled < args.count:
        summary.fail("-", f"answered {summary.handled} of {args.count} requests within {args.timeout} s")
    consumer.close()
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["publish", "request", "consume", "serve"])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default=f"python-peer-{uuid.uuid4()}")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=60.0, help="hang guard, seconds")
    parser.add_argument("--expect-source", default="topicbus-peers")
    args = parser.parse_args()
    summary = {"publish": publish, "request": request, "consume": consume, "serve": serve}[args.command](args)
    sys.exit(summary.report())


if __name__ == "__main__":
    main()
