--- @include "numbers"
-- includes/customers.lua: the per-customer counters of one SKU.

-- Per customer and SKU: `u:` units held + committed (purchase limit), `h:` active holds.
-- Fields that reach zero are deleted so a long sale does not accumulate them.
local function customer_get(cust_key, customer)
  local v = redis.call('HMGET', cust_key, 'u:' .. customer, 'h:' .. customer)
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0
end

-- One read and one write per kind (set / delete) instead of an increment and a delete per
-- counter: a release drops both counters to zero with two calls, not four.
local function customer_add(cust_key, customer, units, holds)
  local now_units, now_holds = customer_get(cust_key, customer)
  local set, gone = {}, {}
  for _, c in ipairs({ { 'u:', now_units, units }, { 'h:', now_holds, holds } }) do
    if c[3] ~= 0 then
      local value = c[2] + c[3]
      if value <= 0 then
        gone[#gone + 1] = c[1] .. customer
      else
        set[#set + 1] = c[1] .. customer
        set[#set + 1] = fmt(value)
      end
    end
  end
  if #set > 0 then
    redis.call('HSET', cust_key, unpack(set))
  end
  if #gone > 0 then
    redis.call('HDEL', cust_key, unpack(gone))
  end
end
