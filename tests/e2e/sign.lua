-- One message through opendkim's milter socket, as sendmail on smtp-out would pass it on,
-- and a check of what opendkim answered at end of message.
--
--   miltertest -s sign.lua -D socket=inet:8891@127.0.0.1 -D from=a@x.example.com \
--              -D expect=x.example.com      (or expect=none: no signature wanted)
--
-- Exits 0 when the answer is the expected one and prints the DKIM-Signature it got, if
-- any; any other outcome exits 1 with a line on stderr that says what happened (miltertest
-- drops the message of a Lua error(), hence fail()).

local function fail(message)
  io.stderr:write(message .. "\n")
  os.exit(1)
end

local function must(result, step)
  if result ~= nil then
    fail(step .. " failed: " .. tostring(result))
  end
end

local conn = mt.connect(socket, 40, 0.05)
if conn == nil then
  fail("no milter listening at " .. socket)
end
-- 127.0.0.1 is in TrustedHosts (InternalHosts): opendkim signs what it sends.
must(mt.conninfo(conn, "localhost", "127.0.0.1"), "conninfo")
must(mt.macro(conn, SMFIC_MAIL, "i", "BOXQUEUEID"), "macro")
must(mt.mailfrom(conn, "<" .. from .. ">"), "mailfrom")
must(mt.rcptto(conn, "<someone@elsewhere.example.net>"), "rcptto")
must(mt.header(conn, "From", "<" .. from .. ">"), "header From")
must(mt.header(conn, "To", "<someone@elsewhere.example.net>"), "header To")
must(mt.header(conn, "Subject", "tier in a box"), "header Subject")
must(mt.header(conn, "Date", "Tue, 01 Dec 2026 12:00:00 +0000"), "header Date")
must(mt.header(conn, "Message-ID", "<box@client.cabal.example>"), "header Message-ID")
must(mt.eoh(conn), "eoh")
must(mt.bodystring(conn, "Signed, or not.\r\n"), "body")
must(mt.eom(conn), "eom")

local signed = mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature")
  or mt.eom_check(conn, MT_HDRADD, "DKIM-Signature")
local header = nil
if signed then
  header = mt.getheader(conn, "DKIM-Signature", 0)
  mt.echo("DKIM-Signature: " .. tostring(header))
else
  mt.echo("no DKIM-Signature")
end
mt.disconnect(conn)

if expect == "none" then
  if signed then
    fail("signed, but no signature was expected")
  end
else
  if not signed then
    fail("not signed; expected d=" .. expect)
  end
  -- The d= tag, whole: preceded by the header's start, ';' or folding white space.
  local wanted = "d=" .. expect:gsub("%p", "%%%0") .. ";"
  if not (header:find("^" .. wanted) or header:find("[;%s]" .. wanted)) then
    fail("signed, but not with d=" .. expect)
  end
end
