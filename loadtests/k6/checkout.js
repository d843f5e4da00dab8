// Checkout write path: POST /v1/orders with an Idempotency-Key at a constant
// arrival rate; 5% of the clients send the same request twice (the second
// must be a byte-for-byte replay), and a sample of orders is followed until
// payments settles it.
//
// Every request carries a customer's bearer token (ADR 0022: the customer
// is the token's subject, so the body leaves customer_id out). The tokens
// come in TOKENS, comma-separated; each virtual user places its orders
// with one of them (VU n uses token (n-1) mod count) and reads its sample
// orders back with the same token (another customer's order is a 404).
//
//   make loadtest SCRIPT=checkout                                  # mints TOKENS, then runs this
//   make loadtest SCRIPT=checkout K6_ARGS="-e RATE=100 -e DURATION=60s"
//   TOKENS=$(loadtests/k6/tokens.sh 10) bin/k6 run loadtests/k6/checkout.js
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { ORDERS, bearer, customerTokens, productIDs, retried, withRetry } from './lib.js';

const RATE = Number(__ENV.RATE || 50);
const DURATION = __ENV.DURATION || '30s';

const replays = new Counter('idempotent_replays');
const replayMismatch = new Counter('idempotent_replay_mismatches');
// A replay still answered 503 after its retries (overload: the in-flight
// limit or shedding) is not a mismatch: the client retries it later and
// gets the stored answer. A mismatch is a different answer.
const replayRefused = new Counter('idempotent_replays_refused');
const settleTime = new Trend('order_settle_ms', true);

export const options = {
  scenarios: {
    checkout: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 20,
      maxVUs: 200,
      exec: 'checkout',
    },
  },
  thresholds: {
    'http_req_failed{name:POST /v1/orders}': ['rate<0.01'],
    idempotent_replay_mismatches: ['count==0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return { ids: productIDs(200), tokens: customerTokens() };
}

function post(token, body, key) {
  return withRetry(() => http.post(`${ORDERS}/v1/orders`, body, {
    headers: Object.assign({ 'Content-Type': 'application/json', 'Idempotency-Key': key }, bearer(token)),
    tags: { name: 'POST /v1/orders' },
    // 503 and 409 are answers a client retries, not failures.
    responseCallback: retried,
  }));
}

function getOrder(token, id) {
  return withRetry(() => http.get(`${ORDERS}/v1/orders/${id}`, {
    headers: bearer(token),
    tags: { name: 'GET /v1/orders/{id}' },
    responseCallback: retried,
  }));
}

export function checkout(data) {
  // This VU's customer; orders takes the customer id from the token.
  const token = data.tokens[(__VU - 1) % data.tokens.length];
  const id = data.ids[Math.floor(Math.random() * data.ids.length)];
  const key = `k6-${__VU}-${__ITER}-${Date.now()}`;
  const body = JSON.stringify({
    customer_email: `k6-${__VU}@example.com`,
    currency: 'EUR',
    items: [{ product_id: id, quantity: 1 + (__ITER % 3) }],
    shipping_address: { name: 'k6', line1: '1 Load St', city: 'Berlin', postal_code: '10115', country: 'DE' },
  });
  const res = post(token, body, key);
  if (!check(res, { 'order created': (r) => r.status === 201 })) {
    if (__ENV.DEBUG) console.warn(`POST ${res.status} ${res.body}`);
    return;
  }
  if (Math.random() < 0.05) {
    const again = post(token, body, key);
    replays.add(1);
    if (again.status === 503) {
      replayRefused.add(1);
    } else if (again.status !== 201 || again.body !== res.body || again.headers['Idempotent-Replayed'] !== 'true') {
      replayMismatch.add(1);
      if (__ENV.DEBUG) console.warn(`replay ${again.status} ${JSON.stringify(again.headers)} ${again.body}`);
    }
  }
  if (Math.random() < 0.02) {
    // Follow a sample: orders → ORDERS → payments → provider → PAYMENTS → orders.
    const order = res.json();
    const start = Date.now();
    for (let i = 0; i < 100; i++) {
      const r = getOrder(token, order.id);
      if (r.status !== 200) {
        if (__ENV.DEBUG) console.warn(`GET order ${r.status} ${r.body}`);
        sleep(0.1);
        continue;
      }
      const o = r.json();
      if (o.status !== 'pending_payment') {
        settleTime.add(Date.now() - start);
        check(o, { 'settled as paid': (x) => x.status === 'paid' });
        return;
      }
      sleep(0.1);
    }
  }
}
