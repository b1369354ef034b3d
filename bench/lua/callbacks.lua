-- callbacks.lua: the one wrk script of the benchmark, for all its workloads.
--
--   WORKLOAD=unique LINES=unified.txt WRK_THREADS=2 EXPECT_BODY=success RESULT_OUT=r.txt \
--     wrk -t2 -c64 -d5s -s callbacks.lua http://127.0.0.1:PORT
--
-- Environment:
--   WORKLOAD     unique:   GET each line once (thread k sends lines k, k+T, k+2T, ...)
--                dup:      GET the first DUP_SET lines over and over (all but the first pass duplicates)
--                wechat:   POST each line (an XML body) once to WECHAT_PATH, split like unique
--                v3unique: POST each line (a WeChat Pay v3 notification) once to V3_PATH, split like unique
--                v3dup:    POST the first DUP_SET v3 lines over and over, like dup
--                A v3 line is `timestamp TAB nonce TAB serial TAB signature TAB body` (gen_requests.py
--                wechatv3): the body is sent as it is, the rest as the Wechatpay-* headers.
--                alipayunique: POST each line (an Alipay form body) once to ALIPAY_PATH, split like unique
--                alipaydup:    POST the first DUP_SET Alipay lines over and over, like dup
--                jeepaydup:    POST the first DUP_SET Jeepay lines (form bodies) over and over to JEEPAY_PATH
--   LINES        request file from gen_requests.py (line i = event i)
--   WRK_THREADS  must equal wrk's -t
--   MAX_LINES    read at most this many lines (keeps wrk's start-up short; 0 = all)
--   DUP_SET      distinct events cycled by dup (default 100)
--   WECHAT_PATH  target of the wechat POSTs (default /notify/wechat)
--   V3_PATH      target of the v3 POSTs (default /notify/wechatpay)
--   ALIPAY_PATH  target of the Alipay POSTs (default /notify/alipay)
--   JEEPAY_PATH  target of the Jeepay POSTs (default /notify/jeepay)
--   EXPECT_STATUS the success answer's status (default 200; v3: 204)
--   EXPECT_BODY  the exact success answer's body (v3: empty); anything else (status or body) counts as bad
--   RESULT_OUT   file done() writes the per-thread accounting and the latency summary to
--
-- Why the accounting: wrk itself only counts statuses >= 400 as errors and never looks at
-- bodies, and it cannot say which request a response belonged to. So each thread records
-- how many lines it sent (its sent set is then exactly lines k, k+T, ... of its first
-- `sent` turns) and how many answers were exactly the success answer. check_spool.py
-- compares the spool with those sets. A thread that runs out of lines wraps around and
-- says so (`wrapped`): fine for nginx, a failed run for payhook (the request set was too
-- small to keep every request a new event).

local threads = {}
local counter = 0

-- wrk runs each thread's init() one after the other while the threads already started are
-- sending, and times the run from after the last init, so with big request files its own
-- requests/s is inflated. Each thread therefore notes the monotonic time of its first request
-- and of its last answer, and run.py divides the answers by that window.
local ffi = require("ffi")
ffi.cdef [[
   typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
   int clock_gettime(int clk, bench_timespec *ts);
   unsigned long pthread_self(void);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   workload = os.getenv("WORKLOAD") or "unique"
   local T = tonumber(os.getenv("WRK_THREADS") or "2")
   local maxlines = tonumber(os.getenv("MAX_LINES") or "0")
   local dupset = tonumber(os.getenv("DUP_SET") or "100")
   expect = os.getenv("EXPECT_BODY") or "success"
   expect_status = tonumber(os.getenv("EXPECT_STATUS") or "200")
   wechat_path = os.getenv("WECHAT_PATH") or "/notify/wechat"
   v3_path = os.getenv("V3_PATH") or "/notify/wechatpay"
   alipay_path = os.getenv("ALIPAY_PATH") or "/notify/alipay"
   jeepay_path = os.getenv("JEEPAY_PATH") or "/notify/jeepay"
   cycling = workload == "dup" or workload == "v3dup" or workload == "alipaydup" or workload == "jeepaydup"
   v3 = workload == "v3unique" or workload == "v3dup"
   form_path = nil
   if workload == "alipayunique" or workload == "alipaydup" then form_path = alipay_path end
   if workload == "jeepaydup" then form_path = jeepay_path end
   lines = {}
   local i = 0
   for line in io.lines(os.getenv("LINES")) do
      if cycling then
         if i >= dupset then break end
         lines[#lines + 1] = line
      else
         if maxlines > 0 and i >= maxlines then break end
         if i % T == id then lines[#lines + 1] = line end
      end
      i = i + 1
   end
   n = #lines
   if n == 0 then error("callbacks.lua: thread " .. id .. " got no lines") end
   -- dup staggers the threads over the set so they do not send the same event at once
   start = 0
   if cycling then start = math.floor(id * n / T) end
   sent, ok, bad, wrapped = 0, 0, 0, 0
   -- init() runs on wrk's main thread. wrk also calls request() there once, on the first
   -- thread's state, to check the script before any connection exists; that request is never
   -- sent, so it must not count as sent (it would show up as a sent event never stored).
   main_thread = ffi.C.pthread_self()
   running = false
   first_us, last_us = 0, 0
   badstatus, badbody = "", ""
   headers = {["Content-Type"] = "text/xml"}
   formheaders = {["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"}
   v3headers = {["Content-Type"] = "application/json",
                ["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-RSA2048"}
end

function request()
   local k = start + sent
   if not running then
      if ffi.C.pthread_self() == main_thread then
         return build(lines[(k % n) + 1])  -- wrk's script check: not sent, not counted
      end
      running = true
      first_us = now_us()
   end
   if not cycling and k >= n then wrapped = 1 end
   sent = sent + 1
   return build(lines[(k % n) + 1])
end

function build(line)
   if v3 then
      local ts, nonce, serial, sig, body = string.match(line, "^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      v3headers["Wechatpay-Timestamp"] = ts
      v3headers["Wechatpay-Nonce"] = nonce
      v3headers["Wechatpay-Serial"] = serial
      v3headers["Wechatpay-Signature"] = sig
      return wrk.format("POST", v3_path, v3headers, body)
   end
   if workload == "wechat" then
      return wrk.format("POST", wechat_path, headers, line)
   end
   if form_path then
      return wrk.format("POST", form_path, formheaders, line)
   end
   return wrk.format("GET", line)
end

function response(status, hdrs, body)
   last_us = now_us()
   if status == expect_status and (body or "") == expect then
      ok = ok + 1
   else
      bad = bad + 1
      if badstatus == "" then
         badstatus = tostring(status)
         badbody = string.sub(string.gsub(body or "", "[^%w]", "_"), 1, 60)
      end
   end
end

function done(summary, latency, requests)
   local out = os.getenv("RESULT_OUT")
   if not out then return end
   local f = io.open(out, "w")
   f:write("threads " .. #threads .. "\n")
   for _, t in ipairs(threads) do
      f:write(string.format("thread %d start %d sent %d lines %d ok %d bad %d wrapped %d first_us %.0f last_us %.0f badstatus %s badbody %s\n",
         t:get("id"), t:get("start"), t:get("sent"), t:get("n"), t:get("ok"), t:get("bad"),
         t:get("wrapped"), t:get("first_us"), t:get("last_us"),
         (t:get("badstatus") ~= "" and t:get("badstatus") or "-"),
         (t:get("badbody") ~= "" and t:get("badbody") or "-")))
   end
   f:write(string.format("summary requests %d duration_us %d bytes %d\n",
      summary.requests, summary.duration, summary.bytes))
   f:write(string.format("errors connect %d read %d write %d status %d timeout %d\n",
      summary.errors.connect, summary.errors.read, summary.errors.write,
      summary.errors.status, summary.errors.timeout))
   f:write(string.format("latency_us p50 %d p90 %d p99 %d p999 %d max %d mean %.1f\n",
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
   f:close()
end
