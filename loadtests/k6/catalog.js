// Catalog read path: product reads with a Zipf key mix (s = 1.1), through
// the CDN and straight to catalog, at a constant arrival rate.
//
//   bin/k6 run loadtests/k6/catalog.js
//   bin/k6 run -e RATE=2000 -e DURATION=60s -e TARGET=catalog loadtests/k6/catalog.js
//
// TARGET: cdn (Varnish), catalog (the service: near cache, then Redis), or
// both (default; two scenarios one after the other). Product reads are
// public (anonymous, CDN-cached), so no token is sent: a request with
// Authorization would bypass the CDN. Figures go to
// docs/benchmarks.md; the thresholds only fail a run that serves errors.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { CDN, CATALOG, productIDs, zipfSampler } from './lib.js';

const RATE = Number(__ENV.RATE || 1000);
const DURATION = __ENV.DURATION || '30s';
const TARGET = __ENV.TARGET || 'both';
const PRODUCTS = Number(__ENV.PRODUCTS || 1000);

const cdnHits = new Counter('cdn_hits');

function scenario(target, startTime) {
  return {
    executor: 'constant-arrival-rate',
    rate: RATE,
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: 50,
    maxVUs: 200,
    startTime,
    exec: 'read',
    env: { READ_TARGET: target },
    tags: { target },
  };
}

const scenarios = {};
if (TARGET === 'cdn' || TARGET === 'both') scenarios.cdn = scenario('cdn', '0s');
if (TARGET === 'catalog' || TARGET === 'both') {
  scenarios.catalog = scenario('catalog', TARGET === 'both' ? DURATION : '0s');
}

export const options = {
  scenarios,
  // Thresholds fail only a broken run (errors, or reads slower than a
  // second); the per-target latency lines they add to the summary are the
  // figures.
  thresholds: {
    'http_req_failed{target:cdn}': ['rate<0.01'],
    'http_req_failed{target:catalog}': ['rate<0.01'],
    'http_req_duration{target:cdn}': ['p(99)<1000'],
    'http_req_duration{target:catalog}': ['p(99)<1000'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return { ids: productIDs(PRODUCTS) };
}

let next;

export function read(data) {
  if (!next) next = zipfSampler(data.ids.length, 1.1);
  const id = data.ids[next()];
  const base = __ENV.READ_TARGET === 'cdn' ? CDN : CATALOG;
  const res = http.get(`${base}/v1/products/${id}?currency=EUR`, { tags: { name: 'GET /v1/products/{id}' } });
  check(res, {
    'status 200': (r) => r.status === 200,
    'has an ETag': (r) => !!r.headers['Etag'],
  });
  if (__ENV.READ_TARGET === 'cdn' && (res.headers['X-Cache'] || '').startsWith('HIT')) {
    cdnHits.add(1);
  }
}
