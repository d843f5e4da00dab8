// Package cache is versioned cache-aside in Redis: PostgreSQL is the truth,
// Redis a derived, disposable copy. If Redis disappears, reads get slower,
// never wrong.
//
// # Keys
//
// Every entity has a version pointer, and values live under keys that carry
// every input that changes them:
//
//	<ns>:<class>:s<schema>:ptr:<id>                      → current version
//	<ns>:<class>:s<schema>:val:<id>:<version>:<variant>  → encoded value
//	<ns>:<class>:s<schema>:neg:<id>                      → "not found" marker
//
// (variant: locale, currency, whatever else the caller's rendering depends
// on; schema: bump it when the encoding of V changes, and old entries are
// simply never read again.)
//
// # Contract
//
//   - Readers read the pointer and the value in one round trip (a Lua
//     script). On a miss they load the row with its version from the
//     source and store the value only under that version's key; the pointer
//     only moves forward (a compare-and-set to the maximum). So a slow
//     reader that loaded version N after a writer moved the pointer to N+1
//     writes an unreachable key; readers after the move never see N.
//   - Writers call Invalidate(id, newVersion) after committing (the
//     invalidation consumer does it for every product event): the pointer
//     moves, the negative marker goes. Until it runs, readers may serve the
//     previous version: stale by at most the consumer's lag.
//   - Request coalescing: one source load per key per instance at a time;
//     concurrent readers wait for it and share its result.
//   - Hard TTL (default 1h, ±10% jitter so entries written together do not
//     expire together) bounds memory; soft TTL (default 5m) marks an entry
//     stale: it is still served while one background refresh runs.
//   - "Not found" is cached for NegativeTTL (default 5s); Invalidate (a
//     create) removes it at once.
//   - At most MaxConcurrentLoads source loads run at once per instance.
//     Beyond that a reader is served stale if there is a stale value, else
//     waits up to LoadWait for a slot, else gets ErrOverloaded (answer 503
//     with Retry-After).
//   - Redis errors and timeouts (RedisTimeout, default 50ms) fail open to
//     the source, behind a circuit breaker: after BreakerFailures
//     consecutive failures Redis is skipped for BreakerOpenFor, so a dead
//     Redis costs one fast check, not a timeout per request.
//     Build the client with ClientOptions: go-redis ignores context
//     deadlines on sockets unless ContextTimeoutEnabled is set.
//   - SetBypass(true) is the emergency switch: every read goes to the
//     source and the cache is neither read nor written.
//
// # Metrics
//
// cache_requests_total{class,result=hit|stale|miss|negative|bypass|fail_open},
// cache_coalesced_total, cache_loads_total{class,outcome},
// cache_load_duration_seconds, cache_redis_errors_total,
// cache_breaker_open (1 while Redis is being skipped).
package cache
