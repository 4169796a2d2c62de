-- wrk script: unique message ids and texts (no cache can help), one
-- conversation per message. MODE=faq sends FAQ questions, MODE=handoff
-- messages that need a person. TOKEN is the channel's bearer token.
local faq = {
  "how do I reset my password", "what are your opening hours", "how long does shipping take",
  "what is your return policy", "which payment methods do you accept", "how can I change my email address",
}
local handoff = {
  "I was charged twice for my order and want my money back",
  "the app crashes every time I open it and I lost my data",
}
local threads = {}
local counter = 0
local tid = 0
local run = os.getenv("RUN") or tostring(os.time())
local mode = os.getenv("MODE") or "faq"
local token = os.getenv("TOKEN") or ""

function setup(thread)
  thread:set("tid", tid)
  tid = tid + 1
end

function init(args)
  texts = (mode == "handoff") and handoff or faq
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
end

function request()
  counter = counter + 1
  local id = run .. "-" .. tid .. "-" .. counter
  local text = texts[(counter % #texts) + 1] .. " (ref " .. id .. ")"
  local body = '{"message_id":"' .. id .. '","conversation_id":"' .. id ..
    '","customer":{"id":"u' .. id .. '"},"text":"' .. text .. '"}'
  return wrk.format("POST", "/v1/messages", headers, body)
end
