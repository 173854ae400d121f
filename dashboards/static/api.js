// What the server said when it refused: FastAPI's "detail" is a sentence, or (a request that failed
// validation) one entry per bad field, each with its message. Anything else: the caller's fallback.
export function refusalDetail(body, fallback) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg).join("；");
  return fallback;
}
