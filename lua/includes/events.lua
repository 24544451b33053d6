--- @include "numbers"
-- includes/events.lua: appending to the partition stream (field list: engine/events.py).

-- One event per changed line. Every event carries the same fields in the same order, which
-- lets the stream's listpacks store the field names once per node.
local function emit(stream, ts, e)
  redis.call('XADD', stream, '*',
    'type', e.type, 'sku', e.sku, 'location', e.location or '',
    'd_on_hand', fmt(e.d_on_hand or 0), 'd_reserved', fmt(e.d_reserved or 0),
    'd_committed', fmt(e.d_committed or 0),
    'on_hand', fmt(e.on_hand or 0), 'reserved', fmt(e.reserved or 0),
    'committed', fmt(e.committed or 0), 'available', fmt(e.available or 0),
    'reservation_id', e.reservation_id or '', 'order_id', e.order_id or '',
    'customer_id', e.customer_id or '', 'reason', e.reason or '', 'reference', e.reference or '',
    'backordered', fmt(e.backordered or 0), 'expires_at', e.expires_at or '',
    'data', e.data or '', 'ts', fmt(ts))
end
