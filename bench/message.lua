-- wrk script: unique message ids, a number after each text, one
-- conversation per message. MODE=faq sends FAQ questions, MODE=handoff
-- messages that need a person. TOKEN is the channel's bearer token, RUN a
-- prefix unique to the run (bench/run.py passes one per measurement).
--
-- bench/loadgen.py sends the same texts in the same body shape; keep the
-- two lists in step.
-- The same questions and numbers as bench/loadgen.py (FAQ, NUMBERS): the
-- demo model answers each with any number up to 9,999 after it.
local faq = {
  "how do I reset my password", "do you ship internationally", "how long does shipping take",
  "how do I return an item", "do you accept paypal", "how can I change my email",
}
local handoff = {
  "I was charged twice for my order and want my money back",
  "the app crashes every time I open it and I lost my data",
}
local counter = 0
-- Thread numbers: `setup` runs in its own environment and hands each thread
-- its number through thread:set, which sets a *global* in the thread's
-- environment. It must not be shadowed by a `local tid` here, or every thread
-- would see 0 and two threads would send the same message ids (which the
-- service then answers from its idempotency record, a cache hit).
local next_tid = 0
tid = 0
local run = os.getenv("RUN") or tostring(os.time())
local mode = os.getenv("MODE") or "faq"
local token = os.getenv("TOKEN") or ""

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

function init(args)
  texts = (mode == "handoff") and handoff or faq
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
end

function request()
  counter = counter + 1
  local id = run .. "-" .. tid .. "-" .. counter
  local text = texts[(counter % #texts) + 1] .. " #" .. ((tid * 5000 + counter) % 10000)
  local body = '{"message_id":"' .. id .. '","conversation_id":"' .. id ..
    '","customer":{"id":"u' .. id .. '"},"text":"' .. text .. '"}'
  return wrk.format("POST", "/v1/messages", headers, body)
end

-- One machine-readable line for bench/run.py (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_status":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
