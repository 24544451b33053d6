-- includes/reservation.lua: reading one reservation's part in this partition.
-- Hash fields: fp (request fingerprint), cust, st (held|committed|fulfilled|released|expired),
-- exp (deadline ms), ext (extensions used; absent until the first), ord (order id), ca (created
-- ms), gen (incarnation: a nonce given at creation, so a token issued for an earlier use of the
-- id opens nothing),
-- skus (its SKUs, "\n"-joined, in KEYS order), lines (JSON [[sku, qty, [[loc, qty, backordered,
-- fulfilled], ...]], ...]), fid:<id> (answers of idempotent fulfilments).

local function load_reservation(res_key, reservation_id)
  local raw = redis.call('HGETALL', res_key)
  if #raw == 0 then
    return nil
  end
  local r = {}
  for i = 1, #raw, 2 do
    r[raw[i]] = raw[i + 1]
  end
  r.exp = tonumber(r.exp)
  r.ext = tonumber(r.ext or '0')
  r.rid = reservation_id
  return r
end

local function reply(r, extra)
  local out = { ok = 1, st = r.st, exp = r.exp, cust = r.cust, ord = r.ord or '', ext = r.ext,
                lines = r.lines, gen = r.gen or '' }
  if extra then
    for k, v in pairs(extra) do out[k] = v end
  end
  return cjson.encode(out)
end
