"""The Lua scripts of the Redis broker: every state change of a message is one atomic step.

Keys (``P`` is the key prefix, ``taskq`` by default; queue lists keep Celery's names):
- ``<queue>``, ``<queue>\\x06\\x16<3|6|9>``: ready messages, kombu's JSON, LPUSHed, RPOPped.
- ``P:delayed:<queue>``: zset of ``<list key>\\n<message>`` by due time (ms).
- ``P:inflight``: hash ``<tag>`` → ``<list key>\\n<message>``; tag = ``<token>:<n>:<sha1>``.
- ``P:leases``: zset ``<tag>`` by lease deadline (ms).
- ``P:attempts``: hash ``<sha1 of message>`` → deliveries so far (survives redelivery).
- ``P:dead``: list of JSON dead letters.
- ``P:wake:<queue>``: wake-up tokens for idle workers blocked in BLPOP.
"""

# KEYS: delayed zsets (nq of them), then the wake lists (nq), then ready lists in claim order.
# ARGV: max messages, claim token, now ms, lease deadline ms, nq, prefix.
CLAIM = """
local n, token, now, deadline = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local nq, prefix = tonumber(ARGV[5]), ARGV[6]
for i = 1, nq do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, 1000)
  if #due > 0 then
    redis.call('ZREM', KEYS[i], unpack(due))
    for _, member in ipairs(due) do
      local cut = string.find(member, '\\n', 1, true)
      redis.call('RPUSH', string.sub(member, 1, cut - 1), string.sub(member, cut + 1))
    end
  end
end
local out, leases, held, taken = {}, {}, {}, 0
for i = 2 * nq + 1, #KEYS do
  if taken >= n then break end
  local batch = redis.call('RPOP', KEYS[i], n - taken)
  if batch then
    for _, raw in ipairs(batch) do
      taken = taken + 1
      local sha = redis.sha1hex(raw)
      local attempts = redis.call('HINCRBY', prefix .. ':attempts', sha, 1)
      local tag = token .. ':' .. taken .. ':' .. sha
      held[#held + 1] = tag; held[#held + 1] = KEYS[i] .. '\\n' .. raw
      leases[#leases + 1] = deadline; leases[#leases + 1] = tag
      out[#out + 1] = tag; out[#out + 1] = attempts; out[#out + 1] = KEYS[i]; out[#out + 1] = raw
    end
  end
end
if taken > 0 then
  redis.call('HSET', prefix .. ':inflight', unpack(held))
  redis.call('ZADD', prefix .. ':leases', unpack(leases))
else
  -- Nothing ready: the wake tokens are stale (their messages were taken), so a worker that
  -- blocks next waits for a token pushed after this point.
  redis.call('DEL', unpack(KEYS, nq + 1, 2 * nq))
end
return out
"""

# Take a held message out of flight. Returns the held value or false.
_TAKE = """
local function take(prefix, tag)
  local held = redis.call('HGET', prefix .. ':inflight', tag)
  if not held then return false end
  redis.call('HDEL', prefix .. ':inflight', tag)
  redis.call('ZREM', prefix .. ':leases', tag)
  return held
end
local function sha_of(tag) return string.match(tag, ':([^:]+)$') end
local function split(held)
  local cut = string.find(held, '\\n', 1, true)
  return string.sub(held, 1, cut - 1), string.sub(held, cut + 1)
end
"""

# ARGV: prefix, tags...
ACK = _TAKE + """
local prefix, done = ARGV[1], 0
for i = 2, #ARGV do
  if take(prefix, ARGV[i]) then
    redis.call('HDEL', prefix .. ':attempts', sha_of(ARGV[i]))
    done = done + 1
  end
end
return done
"""

# KEYS: the delayed zset of the message's queue. ARGV: prefix, tag, due ms ('' = now), undo (0/1).
REQUEUE = _TAKE + """
local prefix, tag, due, undo = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local held = take(prefix, tag)
if not held then return 0 end
if undo == '1' then redis.call('HINCRBY', prefix .. ':attempts', sha_of(tag), -1) end
if due == '' then
  local list, raw = split(held)
  redis.call('LPUSH', list, raw)
else
  redis.call('ZADD', KEYS[1], due, held)
end
return 1
"""

# ARGV: prefix, tags... (in reverse claim order, so the first claimed is next again)
RELEASE = _TAKE + """
local prefix = ARGV[1]
for i = 2, #ARGV do
  local held = take(prefix, ARGV[i])
  if held then
    local sha = sha_of(ARGV[i])
    if redis.call('HINCRBY', prefix .. ':attempts', sha, -1) <= 0 then
      redis.call('HDEL', prefix .. ':attempts', sha)
    end
    local list, raw = split(held)
    redis.call('RPUSH', list, raw)
  end
end
return 1
"""

# ARGV: prefix, tag, reason, now (seconds, float as text)
DEAD_LETTER = _TAKE + """
local prefix, tag = ARGV[1], ARGV[2]
local held = take(prefix, tag)
if not held then return 0 end
local sha = sha_of(tag)
local attempts = tonumber(redis.call('HGET', prefix .. ':attempts', sha) or '0')
redis.call('HDEL', prefix .. ':attempts', sha)
local list, raw = split(held)
redis.call('RPUSH', prefix .. ':dead', cjson.encode({list = list, reason = ARGV[3],
  attempts = attempts, time = tonumber(ARGV[4]), message = raw}))
return 1
"""

# ARGV: prefix, now ms, max deliveries, reason head, reason tail, now (seconds)
# Returns the dead-lettered messages as attempts, list, raw triples.
RECOVER = _TAKE + """
local prefix, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', prefix .. ':leases', '-inf', '(' .. now, 'LIMIT', 0, 1000)
local dead = {}
for _, tag in ipairs(expired) do
  local held = take(prefix, tag)
  if held then
    local sha = sha_of(tag)
    local attempts = tonumber(redis.call('HGET', prefix .. ':attempts', sha) or '0')
    local list, raw = split(held)
    if attempts >= limit then
      redis.call('HDEL', prefix .. ':attempts', sha)
      redis.call('RPUSH', prefix .. ':dead', cjson.encode({list = list,
        reason = ARGV[4] .. attempts .. ARGV[5], attempts = attempts,
        time = tonumber(ARGV[6]), message = raw}))
      dead[#dead + 1] = attempts; dead[#dead + 1] = list; dead[#dead + 1] = raw
    else
      redis.call('RPUSH', list, raw)
    end
  end
end
return dead
"""
