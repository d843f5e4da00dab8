// Shared helpers for the shopfloor k6 scripts.
import http from 'k6/http';
import { sleep } from 'k6';

// Base URLs of the local topology (deploy/local/ports.sh, SHOPFLOOR_PORT_BASE
// 8000) or of compose's published ports; override with -e.
export const CDN = __ENV.CDN_URL || 'http://127.0.0.1:8080';
export const CATALOG = __ENV.CATALOG_URL || 'http://127.0.0.1:8081';
export const ORDERS = __ENV.ORDERS_URL || 'http://127.0.0.1:8082';
export const SEARCH = __ENV.SEARCH_URL || 'http://127.0.0.1:8085';

// customerTokens returns the customers' access tokens from TOKENS (comma-
// separated; `make loadtest SCRIPT=checkout` mints them for the synthetic
// customers load-k6-1 … load-k6-N with loadtests/k6/tokens.sh). k6 cannot
// sign in through the provider's form itself, so a script that places
// orders needs them; the tokens live an hour, so does the run at most.
export function customerTokens() {
  const tokens = (__ENV.TOKENS || '').split(',').map((t) => t.trim()).filter((t) => t !== '');
  if (tokens.length === 0) {
    throw new Error('no customer tokens: run it with `make loadtest SCRIPT=checkout` (mints them), ' +
      'or pass TOKENS=<token>,<token>… (scripts/token.sh load-k6-1 prints one)');
  }
  return tokens;
}

// bearer is the Authorization header of a token.
export function bearer(token) {
  return { Authorization: `Bearer ${token}` };
}

// productIDs pages through the public catalog (at most max ids).
export function productIDs(max) {
  const ids = [];
  let token = '';
  while (ids.length < max) {
    const res = http.get(`${CATALOG}/v1/products?limit=100${token ? '&page_token=' + token : ''}`,
      { tags: { name: 'setup' } });
    if (res.status !== 200) {
      throw new Error(`listing products: ${res.status} ${res.body}`);
    }
    const page = res.json();
    for (const p of page.products) ids.push(p.id);
    if (!page.next_page_token) break;
    token = page.next_page_token;
  }
  if (ids.length === 0) {
    throw new Error('the catalog has no products: run `catalog seed` (make start seeds 1000)');
  }
  return ids;
}

// zipf returns an index in [0, n) with P(i) ∝ 1/(i+1)^s, from a table
// built once per VU (k6 has no Zipf generator).
export function zipfSampler(n, s) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    sum += 1 / Math.pow(i + 1, s);
    cdf[i] = sum;
  }
  return () => {
    const u = Math.random() * sum;
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
}

// retried marks the answers a well-behaved client retries, 503 (the
// in-flight limit, shedding, a dependency down) and 409 (the same key
// still in flight), as expected: they are not failures in http_req_failed.
export const retried = http.expectedStatuses(200, 201, 409, 503);

// withRetry sends req() again while the answer is 503 or 409, after
// Retry-After, at most 5 times; every retry is a request of its own in
// http_reqs, and only the last answer counts. Every other answer is final:
// 401 (a token expired or not accepted) and 403 are not retried.
export function withRetry(req) {
  let res = req();
  for (let i = 0; i < 5 && (res.status === 503 || res.status === 409); i++) {
    sleep(Number(res.headers['Retry-After'] || 1));
    res = req();
  }
  return res;
}
