-- wrk script: POST /recommend?wait_ms=10000 with histories of 5 to 50 ml-latest-small movie
-- ids (a fixed pool of 200 bodies), authorised by the secret in RECSYS_SECRET.
--   RECSYS_SECRET=... wrk -c32 -d10s -s deploy/wrk/recommend.lua http://127.0.0.1:8000
local ids = {1,2,3,6,10,32,47,50,110,150,260,296,318,356,364,380,457,480,527,589,590,592,593,
  608,648,780,858,1036,1196,1198,1210,1265,1270,1291,1580,1721,2028,2571,2628,2762,2858,2959,
  3578,4226,4306,4993,5952,7153,58559,79132}
local secret = os.getenv("RECSYS_SECRET") or ""
local bodies = {}
for b = 1, 200 do
  local n = 5 + (b * 7) % 46
  local seq, seen = {}, {}
  for i = 1, n do
    local id = ids[((b * 31 + i * 17) % #ids) + 1]
    if not seen[id] then seen[id] = true; seq[#seq + 1] = id end
  end
  bodies[b] = '{"sequence":[' .. table.concat(seq, ",") .. '],"k":10}'
end
local headers = {["content-type"] = "application/json", ["authorization"] = "Bearer " .. secret}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/recommend?wait_ms=10000", headers, bodies[i])
end
