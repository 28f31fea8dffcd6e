"""The Lua scripts of the Redis broker: every state change of a message is one atomic step.

Keys (``P`` is the key prefix, ``taskq`` by default; queue lists keep Celery's names):
- ``<queue>``, ``<queue>\\x06\\x16<3|6|9>``: ready messages, kombu's JSON, LPUSHed, RPOPped.
- ``P:delayed:<queue>``: zset of ``<list key>\\n<message>`` by due time (ms).
- ``P:inflight``: hash ``<tag>`` → ``<attempts>\\n<list key>\\n<message>``; the tag
  ``<claim token>:<n>`` is new for every lease, so a stale holder cannot touch a new lease.
- ``P:leases``: zset ``<tag>`` by lease deadline (ms).
- ``P:dead``: list of JSON dead letters.
- ``P:wake:<queue>``: wake-up tokens for idle workers blocked in BLPOP.

A message that goes back to a queue after a delivery (lease expired, requeue, release) carries
its delivery count as one extra top-level key at the end of its JSON,
``…, "x-taskq-attempts": 2}`` (kombu ignores keys it does not know), so a first delivery — nearly
every delivery — costs no bookkeeping beyond its in-flight record.
"""


# Shared helpers: the delivery count carried by a returned message, and the in-flight record.
_COMMON = """
local MARK = ', "x-taskq-attempts": '
local function attempts_of(raw)
  local tail = string.sub(raw, -40)
  local at, _, n = string.find(tail, ', "x%-taskq%-attempts": (%d+)}$')
  if not at then return 0, raw end
  return tonumber(n), string.sub(raw, 1, #raw - #tail + at - 1) .. '}'
end
local function with_attempts(raw, n)
  if n <= 0 or string.sub(raw, -1) ~= '}' then return raw end
  return string.sub(raw, 1, -2) .. MARK .. n .. '}'
end
local function take(prefix, tag)
  local held = redis.call('HGET', prefix .. ':inflight', tag)
  if not held then return false end
  redis.call('HDEL', prefix .. ':inflight', tag)
  redis.call('ZREM', prefix .. ':leases', tag)
  local a = string.find(held, '\\n', 1, true)
  local b = string.find(held, '\\n', a + 1, true)
  return tonumber(string.sub(held, 1, a - 1)), string.sub(held, a + 1, b - 1), string.sub(held, b + 1)
end
"""

# KEYS: delayed zsets (nq of them), then the wake lists (nq), then ready lists in claim order.
# ARGV: max messages, claim token, now ms, lease deadline ms, nq, prefix.
# Returns tag, attempts, list key, message for each message taken.
CLAIM = _COMMON + """
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
      local before, message = attempts_of(raw)
      local attempts = before + 1
      local tag = token .. ':' .. taken
      held[#held + 1] = tag
      held[#held + 1] = attempts .. '\\n' .. KEYS[i] .. '\\n' .. message
      leases[#leases + 1] = deadline; leases[#leases + 1] = tag
      out[#out + 1] = tag; out[#out + 1] = attempts; out[#out + 1] = KEYS[i]
      out[#out + 1] = message
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

# KEYS: the delayed zset of the message's queue.
# ARGV: prefix, tag, due ms ('' = now), attempts to undo (0 or 1).
REQUEUE = _COMMON + """
local prefix, tag, due, undo = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local attempts, list, raw = take(prefix, tag)
if not attempts then return 0 end
raw = with_attempts(raw, attempts - undo)
if due == '' then
  redis.call('LPUSH', list, raw)
else
  redis.call('ZADD', KEYS[1], due, list .. '\\n' .. raw)
end
return 1
"""

# ARGV: prefix, tags... (in reverse claim order, so the first claimed is next again)
RELEASE = _COMMON + """
local prefix = ARGV[1]
for i = 2, #ARGV do
  local attempts, list, raw = take(prefix, ARGV[i])
  if attempts then redis.call('RPUSH', list, with_attempts(raw, attempts - 1)) end
end
return 1
"""

# ARGV: prefix, tag, reason, now (seconds)
DEAD_LETTER = _COMMON + """
local prefix, tag = ARGV[1], ARGV[2]
local attempts, list, raw = take(prefix, tag)
if not attempts then return 0 end
redis.call('RPUSH', prefix .. ':dead', cjson.encode({list = list, reason = ARGV[3],
  attempts = attempts, time = tonumber(ARGV[4]), message = raw}))
return 1
"""

# ARGV: prefix, now ms, max deliveries, reason head, reason tail, now (seconds)
# Returns the dead-lettered messages as attempts, list, message triples.
RECOVER = _COMMON + """
local prefix, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', prefix .. ':leases', '-inf', '(' .. now,
  'LIMIT', 0, 1000)
local dead = {}
for _, tag in ipairs(expired) do
  local attempts, list, raw = take(prefix, tag)
  if not attempts then
    redis.call('ZREM', prefix .. ':leases', tag)  -- acked between its two steps
  elseif attempts >= limit then
    redis.call('RPUSH', prefix .. ':dead', cjson.encode({list = list,
      reason = ARGV[4] .. attempts .. ARGV[5], attempts = attempts,
      time = tonumber(ARGV[6]), message = raw}))
    dead[#dead + 1] = attempts; dead[#dead + 1] = list; dead[#dead + 1] = raw
  else
    redis.call('RPUSH', list, with_attempts(raw, attempts))
  end
end
return dead
"""

# Requeue or purge dead letters. A dead letter's id is the first ARGV[3] hex digits of the SHA-1
# of its entry in P:dead (its JSON never changes while it is there, and carries the time it
# died, so two entries with one id are byte-for-byte the same letter).
# ARGV: prefix, 'requeue' or 'purge', id width, ids... (no ids: every dead letter)
# A requeued message goes to the back of its list as it was first sent: no delivery count.
DEAD_TAKE = _COMMON + """
local prefix, mode, width = ARGV[1], ARGV[2], tonumber(ARGV[3])
local dead = prefix .. ':dead'
local all = #ARGV == 3
local wanted = {}
for i = 4, #ARGV do wanted[ARGV[i]] = true end
local function requeue(entry)
  local ok, record = pcall(cjson.decode, entry)
  if not (ok and type(record) == 'table' and type(record.list) == 'string'
          and type(record.message) == 'string') then return false end
  local _, raw = attempts_of(record.message)
  redis.call('LPUSH', record.list, raw)
  local cut = string.find(record.list, '\\6\\22', 1, true)
  local wake = prefix .. ':wake:' .. (cut and string.sub(record.list, 1, cut - 1) or record.list)
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 7)
  return true
end
local n, kept = 0, {}
for _, entry in ipairs(redis.call('LRANGE', dead, 0, -1)) do
  local done = false
  if all or wanted[string.sub(redis.sha1hex(entry), 1, width)] then
    done = mode == 'purge' or requeue(entry)
  end
  if done then
    n = n + 1
    if not all then redis.call('LREM', dead, 1, entry) end
  elseif all then
    kept[#kept + 1] = entry
  end
end
if all then  -- one DEL instead of an LREM per entry; what could not be requeued stays
  redis.call('DEL', dead)
  for i = 1, #kept, 1000 do
    redis.call('RPUSH', dead, unpack(kept, i, math.min(i + 999, #kept)))
  end
end
return n
"""

# In-flight messages of each queue (ARGV[2..]): counted here, so only the numbers cross the
# network, not every held message body. KEYS: inflight. ARGV: the priority separator, queues.
IN_FLIGHT = """
local at, counts = {}, {}
for i = 2, #ARGV do at[ARGV[i]] = i - 1; counts[i - 1] = 0 end
for _, held in ipairs(redis.call('HVALS', KEYS[1])) do
  local from = string.find(held, '\\n', 1, true)
  local to = string.find(held, '\\n', from + 1, true)
  local key = string.sub(held, from + 1, to - 1)
  local cut = string.find(key, ARGV[1], 1, true)
  if cut then key = string.sub(key, 1, cut - 1) end
  local i = at[key]
  if i then counts[i] = counts[i] + 1 end
end
return counts
"""
