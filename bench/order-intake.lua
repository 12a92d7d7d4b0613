-- wrk script: POST /api/v1/orders with a fresh Idempotency-Key per request. Prepend a prelude
-- that sets the body and the token, e.g.
--   wrk.method = "POST"
--   wrk.body = '{"items":[{"productId":"<id>","quantity":1}],"shippingAddress":{...},"paymentMethodToken":"tok_approved"}'
--   wrk.headers["Content-Type"] = "application/json"
--   wrk.headers["Authorization"] = "Bearer <client token of `ordermesh token client`>"
-- then: wrk -t2 -c16 -d8s --latency -s prelude+this.lua http://127.0.0.1:8080/api/v1/orders
local counter = 0
local thread_id = 0
function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = string.format("bench-%d-%d-%d", tid or 0, counter, math.random(1, 1e9))
  return wrk.format("POST", "/api/v1/orders", nil, wrk.body)
end
done = function(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
