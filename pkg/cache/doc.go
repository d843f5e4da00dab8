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
// Values and negative markers always have a TTL; pointers never do: a
// pointer that expired or was evicted would let a slow reader store an
// older version as current again. Run Redis with a volatile-* eviction
// policy (volatile-lru, volatile-ttl), which evicts only keys with a TTL,
// so memory pressure drops values, never pointers (ADR 0008). A pointer
// costs one small key per entity ever cached.
//
// # Redis ACL
//
// A Cache needs only ACLCommands on its namespace's keys and channels:
// ACLRules(namespace) are the rules of such a user (ADR 0036). Errors
// about a Redis URL show it without its password (RedactURL).
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
//   - An Invalidate that fails because Redis is unreachable returns an
//     error and is remembered (up to 100 000 entities): until it is
//     re-sent, this instance reads those entities from the source, never
//     from Redis, and it re-sends them before its next Redis read and
//     every 200ms while Run runs. So once Redis is back, other instances
//     read the old version only until the writer (or the invalidation
//     consumer, which retries too) gets through: a fraction of a second,
//     not the soft TTL. Metrics: cache_invalidations_pending,
//     cache_invalidations_resent_total.
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
// # Near cache (optional)
//
// With Config.Near.Entities > 0 and Run running, each instance keeps the
// values it read in process and answers repeats without a Redis round trip
// (Result Near). It never serves what the Redis layer would not:
//
//   - Invalidate also publishes "<id> <version>" on the Redis channel
//     <ns>:<class>:s<schema>:invalidations (in the same Lua script that
//     moves the pointer), and applies it to its own near layer before
//     that, so a writer reads its own write.
//   - Every instance raises a per-entity floor to the version it hears of;
//     a near entry below its entity's floor is never served, and a slow
//     reader's older value is never stored above it (the pointer rule,
//     in process).
//   - The layer serves only while its subscription is confirmed. Losing
//     it (an error, or a quiet link that does not answer PING within
//     min(TTL, 3s)) empties the layer and stops it; a new subscription
//     starts empty, so invalidations missed in between cannot leave stale
//     entries. An epoch read before each Redis read keeps values read
//     across such a reset out of the layer.
//   - Entries live at most Near.TTL (default 1s), and never past their
//     Redis soft TTL: the bound on staleness if a message is lost while
//     the link looks healthy (Redis pub/sub is at-most-once).
//
// Another instance's reads lag a write by the pub/sub delivery time
// (about a millisecond), as they lag on a Redis replica. See ADR 0016.
//
// # Metrics
//
// cache_requests_total{class,result=near|hit|stale|miss|negative|bypass|fail_open},
// cache_coalesced_total, cache_loads_total{class,outcome},
// cache_load_duration_seconds, cache_redis_errors_total,
// cache_breaker_open (1 while Redis is being skipped), cache_bypass (1 while
// the emergency switch is on), cache_load_waiters
// (readers waiting for a source load right now: a stampede shows here),
// cache_near_synced (1 while the near layer serves), cache_near_entities,
// cache_near_invalidations_total.
package cache
