-- The SQL of one checkout (orders' POST /v1/orders with two lines), as
-- ordersvc.Place and idempotency.Store.Do run it, for pgbench: the anchor
-- that docs/benchmarks.md compares the HTTP checkout with.
--   pgbench -n -c 4 -j 2 -T 20 -f loadtests/pgbench/checkout.sql <orders db>
SELECT gen_random_uuid() AS oid, gen_random_uuid() AS k \gset
BEGIN;
SELECT scope FROM idempotency_keys WHERE scope = 'anonymous' AND key = ':k';
SELECT pg_try_advisory_xact_lock(1229213008, hashtext(':k'));
INSERT INTO idempotency_keys (scope, key, fingerprint, status, created_at, expires_at)
  VALUES ('anonymous', ':k', '\x00', 0, now(), now() + interval '24 hours')
  ON CONFLICT (scope, key) DO NOTHING;
INSERT INTO orders (id, customer_id, customer_email, status, version, currency, total_minor, shipping, created_at, updated_at)
  VALUES (':oid', 'cust-bench', 'bench@example.com', 'pending_payment', 1, 'EUR', 3997,
          '{"name":"Ada Lovelace","line1":"1 Main St","city":"Berlin","postal_code":"10115","country":"DE"}', now(), now());
INSERT INTO order_items (order_id, line, product_id, sku, name, quantity, unit_price_minor, catalog_version)
  SELECT ':oid', l.line, gen_random_uuid(), l.sku, l.name, l.qty, l.price, 1
  FROM unnest(ARRAY[0, 1], ARRAY['MUG-RED', 'TEA-GREEN'], ARRAY['Red mug', 'Green tea'], ARRAY[2, 3], ARRAY[1250, 499])
       AS l(line, sku, name, qty, price);
SELECT pg_advisory_xact_lock(1329745752, hashtext(k)) FROM unnest(ARRAY[':oid']) AS k ORDER BY k;
INSERT INTO outbox (event_id, stream, key, event_type, payload, headers)
  VALUES (gen_random_uuid()::text, 'ORDERS', ':oid', 'order.placed', convert_to(repeat('x', 700), 'UTF8'), '{}');
SELECT pg_notify('shopfloor_outbox', '');
UPDATE idempotency_keys SET status = 201, headers = '{"Content-Type":["application/json"]}', body = convert_to(repeat('x', 600), 'UTF8')
  WHERE scope = 'anonymous' AND key = ':k';
COMMIT;
