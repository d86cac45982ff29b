"""The Lua scripts behind :mod:`ds2proxy.state.leases`.

Keys every script is given: KEYS[1] the set of every lease (the global
limit), KEYS[2] the cluster's line of waiting requests (tickets scored by
arrival, from the counter KEYS[5]), KEYS[3] the same tickets scored by
expiry (their instance renews them, so a dead instance's waiters leave the
line within the lease TTL), KEYS[4] each ticket's accounts (the accounts it
could take when it last asked: the SHA-1 of their sorted JSON list, kept
once at ``KEYS[4]:<sha>`` for every ticket wanting the same accounts and
expiring with the last of them; an inline JSON list is read too). An account's leases are the set
``<prefix><account>`` (the prefix passed in ARGV). Times are Redis's own.
KEYS[6] and KEYS[7] and the last four ARGV are the data generation's
(:mod:`ds2proxy.state.redis_epoch`): while Redis settles after losing its
data, no capacity is free.

Free capacity goes to the line in order: walking it from the front, each
ticket takes the first of its accounts with room; a request (in line or
new) gets a lease only from what is left after every ticket ahead of it
took its share. The tickets a share went to are published on the freed
channel (space-separated), so exactly their instances wake them.
"""

from __future__ import annotations

from .redis_epoch import LUA as EPOCH

# How far down the line one decision looks: beyond it, the tickets ahead
# have had the first claim on capacity already.
SCAN = 256

_COMMON = EPOCH + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local SCAN = %d
local room, gfree = {}, 0

local function drop_ticket(tk)
  redis.call('ZREM', KEYS[2], tk)
  redis.call('ZREM', KEYS[3], tk)
  return redis.call('HDEL', KEYS[4], tk)
end

local function expire_tickets()
  local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, SCAN)
  for _, tk in ipairs(dead) do drop_ticket(tk) end
end

local function free(prefix, limit, acc)
  local r = room[acc]
  if r == nil then
    redis.call('ZREMRANGEBYSCORE', prefix .. acc, '-inf', now)
    r = limit - redis.call('ZCARD', prefix .. acc)
    room[acc] = r
  end
  return r
end

local function open_capacity(glimit)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  gfree = glimit - redis.call('ZCARD', KEYS[1])
  -- Redis lost its data a moment ago: nothing is free until the holders
  -- have put their leases back
  if settling_ms() > 0 then gfree = 0 end
end

-- Where a ticket's accounts are kept (see the module's notes).
local function keep_wants(json, ttl)
  local id = redis.sha1hex(json)
  local key = KEYS[4] .. ':' .. id
  if redis.call('PEXPIRE', key, ttl + 1000) == 0 then
    redis.call('SET', key, json, 'PX', ttl + 1000)
  end
  return id
end

local function wanted(id)
  if string.sub(id, 1, 1) == '[' then return cjson.decode(id) end
  local json = redis.call('GET', KEYS[4] .. ':' .. id)
  if json then return cjson.decode(json) end
  return {}
end

local function owed(prefix, limit, stop)
  local due = {}
  if gfree <= 0 or stop <= 0 then return due end
  local line = redis.call('ZRANGE', KEYS[2], 0, math.min(stop, SCAN) - 1)
  -- Tickets mostly want the same accounts: each list is read once, and its
  -- walk resumes where the last ticket wanting it stopped (room only shrinks
  -- during one call), so a call costs the accounts once per list, not once
  -- per ticket (a thousand accounts and a full line: ~1 ms, not ~15).
  local walks = {}
  for _, tk in ipairs(line) do
    if gfree <= 0 then break end
    local wants = redis.call('HGET', KEYS[4], tk)
    if wants then
      local walk = walks[wants]
      if walk == nil then
        walk = {wanted(wants), 1}
        walks[wants] = walk
      end
      local accs = walk[1]
      while walk[2] <= #accs do
        local acc = accs[walk[2]]
        if free(prefix, limit, acc) > 0 then
          room[acc] = room[acc] - 1
          gfree = gfree - 1
          due[#due + 1] = tk
          break
        end
        walk[2] = walk[2] + 1
      end
    end
  end
  return due
end

local function announce(channel, due)
  if #due > 0 then redis.call('PUBLISH', channel, table.concat(due, ' ')) end
end

-- A new ticket's place: after the last one given, and never below Redis's
-- clock (ms) times 1000, so a request joining after Redis lost the line
-- (its counter back at 0) still comes after the tickets put back with the
-- places they had.
local function join(tk, seq)
  local last = tonumber(redis.call('GET', KEYS[5]) or '0')
  if seq <= 0 then
    seq = math.max(last + 1, now * 1000)
  end
  if seq > last then redis.call('SET', KEYS[5], seq) end
  redis.call('ZADD', KEYS[2], 'NX', seq, tk)
  return seq
end
""" % SCAN

# ARGV: prefix, lease, ttl ms, per-account limit, global limit, ticket, join
# (1/0), channel, the ticket's former place (0: none), its accounts (sorted JSON),
# then the accounts in preference order. Returns {i, place, epoch, settling
# ms}: i the 1-based index of the account leased, 0 (global full, or Redis
# settling) or -1 (no account with room left to this request); place the
# ticket's place in line (0: none; on a lease, the place it had).
ACQUIRE = _COMMON + """
local prefix, limit, ttl, ticket = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[3]), ARGV[6]
expire_tickets()
open_capacity(tonumber(ARGV[5]))
local place = tonumber(redis.call('ZSCORE', KEYS[2], ticket) or '0')
local ahead = redis.call('ZCARD', KEYS[2])
if place > 0 then ahead = redis.call('ZRANK', KEYS[2], ticket) end
local due = owed(prefix, limit, ahead)
if gfree > 0 then
  for i = 11, #ARGV do
    if free(prefix, limit, ARGV[i]) > 0 then
      redis.call('ZADD', prefix .. ARGV[i], now + ttl, ARGV[2])
      redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
      if place > 0 then drop_ticket(ticket) end
      announce(ARGV[8], due)
      return {i - 10, place, epoch, 0}
    end
  end
end
if place > 0 or ARGV[7] == '1' then
  if place == 0 then place = join(ticket, tonumber(ARGV[9])) end
  redis.call('ZADD', KEYS[3], now + ttl, ticket)
  redis.call('HSET', KEYS[4], ticket, keep_wants(ARGV[10], ttl))
end
announce(ARGV[8], due)
if gfree > 0 then return {-1, place, epoch, 0} end
return {0, place, epoch, settling_ms()}
"""

# ARGV: prefix, channel, per-account limit, global limit, then (account,
# lease) pairs: every release waiting to be sent, in one call; an empty
# account names a ticket leaving the line. Returns 1 or 0 per pair (whether
# it was still there). What a release or a departure frees goes to the line.
RELEASE = _COMMON + """
local prefix, limit = ARGV[1], tonumber(ARGV[3])
local freed, n = {}, 0
for j = 5, #ARGV, 2 do
  local removed
  if ARGV[j] == '' then
    removed = drop_ticket(ARGV[j + 1])
  else
    removed = redis.call('ZREM', prefix .. ARGV[j], ARGV[j + 1])
    redis.call('ZREM', KEYS[1], ARGV[j + 1])
  end
  freed[#freed + 1] = removed
  n = n + removed
end
if n > 0 and redis.call('ZCARD', KEYS[2]) > 0 then
  expire_tickets()
  open_capacity(tonumber(ARGV[4]))
  announce(ARGV[2], owed(prefix, limit, SCAN))
end
return freed
"""

# ARGV: prefix, channel, per-account limit, global limit, ttl ms, mode ('XX';
# 'announce': XX, and the tickets due are published; 'restore'), the number
# of accounts A, the accounts, the number of lease pairs L, L (account,
# lease) pairs, then (ticket, place) pairs: the instance's waiting requests.
# Renewal never resurrects a lease already gone (XX); 'restore' re-adds them
# after Redis came back empty, and so does a caller whose data generation is
# gone (Redis lost its data without an outage). A ticket missing from the
# line is put back at its former place, asking for nothing until its request
# asks again (one given up meanwhile asks for nothing and expires). Returns
# {counts, due, back, epoch, settling ms}: the global count and each
# account's, the tickets capacity is free for now (the instance wakes its
# own; when expired leases were reaped, the others are told too), and the
# tickets put back (to ask again).
RENEW = _COMMON + """
local prefix, limit, ttl, mode = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[5]), ARGV[6]
local tell = mode == 'announce'
if lost then mode = 'restore' elseif tell then mode = 'XX' end
local expiry = now + ttl
local na = tonumber(ARGV[7])
local reaped = 0
for i = 8, 7 + na do
  reaped = reaped + redis.call('ZREMRANGEBYSCORE', prefix .. ARGV[i], '-inf', now)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local first = 9 + na
local last = first + 2 * tonumber(ARGV[8 + na]) - 1
for j = first, last, 2 do
  if mode == 'XX' then
    redis.call('ZADD', prefix .. ARGV[j], 'XX', expiry, ARGV[j + 1])
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[j + 1])
  else
    redis.call('ZADD', prefix .. ARGV[j], expiry, ARGV[j + 1])
    redis.call('ZADD', KEYS[1], expiry, ARGV[j + 1])
  end
end
expire_tickets()
local back = {}
for j = last + 1, #ARGV, 2 do
  if not redis.call('ZSCORE', KEYS[2], ARGV[j]) then
    join(ARGV[j], tonumber(ARGV[j + 1]))
    redis.call('HSETNX', KEYS[4], ARGV[j], '[]')
    back[#back + 1] = ARGV[j]
  end
  local wants = redis.call('HGET', KEYS[4], ARGV[j])
  if wants and string.sub(wants, 1, 1) ~= '[' then
    redis.call('PEXPIRE', KEYS[4] .. ':' .. wants, ttl + 1000)
  end
  redis.call('ZADD', KEYS[3], expiry, ARGV[j])
end
open_capacity(tonumber(ARGV[4]))
local due = owed(prefix, limit, SCAN)
if reaped > 0 or tell then announce(ARGV[2], due) end
local counts = {redis.call('ZCARD', KEYS[1])}
for i = 8, 7 + na do counts[#counts + 1] = redis.call('ZCARD', prefix .. ARGV[i]) end
return {counts, due, back, epoch, settling_ms()}
"""
