// Package events defines the envelope every shopfloor service publishes.
//
// A service writes an event into its transactional outbox in the same
// PostgreSQL transaction as the state change it describes; the relay
// forwards it to NATS JetStream through watermill. Delivery is at least
// once, so the same envelope (same id) may arrive more than once and
// consumers must be idempotent, keyed on id.
//
// # Encoding
//
// An envelope is a CloudEvents 1.0 event in structured JSON mode:
//
//	{
//	  "specversion": "1.0",
//	  "id": "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b70",
//	  "source": "orders",
//	  "type": "order.placed",
//	  "subject": "ord_42",
//	  "time": "2024-07-01T09:30:00.123456Z",
//	  "datacontenttype": "application/json",
//	  "dataschema": "urn:shopfloor:event:order.placed:v1",
//	  "schemaversion": 1,
//	  "aggregateversion": 3,
//	  "correlationid": "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b70",
//	  "causationid": "...",
//	  "traceparent": "00-...-...-01",
//	  "tracestate": "...",
//	  "data": { ... }
//	}
//
// Attributes:
//   - specversion: always "1.0". Readers reject anything else.
//   - id: a UUIDv7 in canonical lower-case form, unique per event. Its
//     prefix is the creation time in milliseconds, so ids made by one
//     process sort in creation order; across processes they are only
//     roughly time-ordered. Use it for deduplication, never for ordering.
//   - source: the publishing service, e.g. "orders".
//   - type: what happened, "<aggregate>.<past-tense verb>" in lower case,
//     e.g. "order.placed"; it matches ^[a-z]+(\.[a-z_]+)+$.
//   - subject: the aggregate the event is about (e.g. the order id). It is
//     the partition key: events with the same subject are published in
//     aggregateversion order.
//   - time: when the change happened (the clock of the producer), UTC,
//     RFC 3339 with microsecond precision, the precision PostgreSQL stores.
//   - datacontenttype: always "application/json"; may be absent on input.
//   - dataschema: DataSchema(type, schemaversion); informative only, readers
//     use schemaversion.
//   - schemaversion (extension): the version of the payload schema of this
//     type, starting at 1.
//   - aggregateversion (extension): the version of the subject after the
//     change, starting at 1 and strictly increasing per subject by one
//     writer. A consumer that has applied version n of a subject ignores
//     any event of that subject with a version <= n (a redelivery or an
//     event overtaken by a newer one) and may treat a gap as "missed
//     events, re-read the source". The CloudEvents Integer type is 32-bit;
//     Go readers accept the full int64 range.
//   - correlationid (extension): the id of the first event (or request) of
//     the business flow; by default the event's own id. CausedBy copies it
//     from the event being handled.
//   - causationid (extension, optional): the id of the event that directly
//     caused this one.
//   - traceparent, tracestate (extensions, optional): W3C Trace Context of
//     the producer, so a consumer's span can link to the producing span. A
//     reader that finds a malformed traceparent drops both values, as the
//     W3C recommendation says, instead of rejecting the event.
//   - data: the payload, always a JSON object (an empty event has {}).
//
// Writers are deterministic: Marshal writes the attributes in the order
// above, omits empty optional ones and writes data in compact form, so the
// same Envelope always gives the same bytes.
//
// # Reading and evolving schemas
//
// Readers are tolerant: Unmarshal ignores attributes it does not know and
// DecodeData ignores unknown fields of data. Consumers must do the same
// with any other decoder, because producers add fields without notice. A
// value of the wrong JSON type is an error, never silently dropped.
//
// A schema (type + schemaversion) evolves only by adding optional fields.
// Removing or renaming a field or changing its JSON type is a breaking
// change: publish it as a new schemaversion of the type (for a while next
// to the old one, until every consumer has moved), never in place.
// CheckGolden enforces this in each service's tests against golden files of
// every declared Schema. A reader checks Readable before it decodes data:
// a type it handles at a schemaversion its build does not know is poison
// (dead-letter it; redrive it once the reader is upgraded), never read as
// the version it knows (ADR 0032).
//
// # Transports
//
// Metadata returns the attributes as string headers (ce_id, ce_type, ...,
// traceparent, tracestate) for transports such as watermill, whose
// message.Metadata is a map[string]string, so that routers and tracing
// middleware can work without decoding the payload. The payload is always
// the complete structured envelope; the headers are a copy.
package events
