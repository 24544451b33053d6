-- includes/fail.lua: a script's refusal, the JSON {err = code, ...details} the engine maps to a
-- typed error (engine/errors.py).

local function fail(code, details)
  details = details or {}
  details['err'] = code
  return cjson.encode(details)
end
