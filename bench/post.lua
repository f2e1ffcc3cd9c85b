-- wrk: POST the JSON body in the file named by BODY_FILE (GET, no body, with METHOD=GET),
-- with the API key in API_KEY if set; with HEADER_LENGTH, the body is the Open Inference
-- Protocol's binary tensor extension, whose JSON part is that long
wrk.method = os.getenv("METHOD") or "POST"
if wrk.method == "POST" then
  wrk.headers["Content-Type"] = "application/json"
  if os.getenv("HEADER_LENGTH") then
    wrk.headers["Content-Type"] = "application/octet-stream"
    wrk.headers["Inference-Header-Content-Length"] = os.getenv("HEADER_LENGTH")
  end
  local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
  wrk.body = file:read("*a")
  file:close()
end
if os.getenv("API_KEY") then
  wrk.headers["X-API-Key"] = os.getenv("API_KEY")
end
