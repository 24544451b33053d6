-- includes/customers.lua: the per-customer counters of one SKU.

-- Per customer and SKU: `u:` units held + committed (purchase limit), `h:` active holds.
-- Fields that reach zero are deleted so a long sale does not accumulate them.
local function customer_add(cust_key, customer, units, holds)
  if units ~= 0 then
    if redis.call('HINCRBY', cust_key, 'u:' .. customer, units) <= 0 then
      redis.call('HDEL', cust_key, 'u:' .. customer)
    end
  end
  if holds ~= 0 then
    if redis.call('HINCRBY', cust_key, 'h:' .. customer, holds) <= 0 then
      redis.call('HDEL', cust_key, 'h:' .. customer)
    end
  end
end

local function customer_get(cust_key, customer)
  local v = redis.call('HMGET', cust_key, 'u:' .. customer, 'h:' .. customer)
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0
end
