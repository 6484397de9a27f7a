// Numbers, sizes, times and durations in words. Times are shown in UTC, as the API and the blob paths give them.

export const WARN_BEFORE_MS = 7 * 24 * 3600 * 1000; // a SAS token expiring sooner than this is a warning

const NUMBER = new Intl.NumberFormat("en");

export function count(value) {
  return NUMBER.format(value ?? 0);
}

export function plural(value, one, many = `${one}s`) {
  return `${count(value)} ${value === 1 ? one : many}`;
}

export function bytes(value) {
  if (value === null || value === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let size = value;
  let unit = 0;
  while (size >= 1000 && unit < units.length - 1) {
    size /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? size : size.toFixed(size < 10 ? 1 : 0)} ${units[unit]}`;
}

/** "2026-12-01 06:03 UTC" */
export function utc(iso) {
  if (!iso) return "";
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return String(iso);
  return `${moment.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** "2 d 3 h", "5 min 4 s", "12 s": the two largest units. */
export function duration(seconds) {
  let rest = Math.max(0, Math.floor(seconds));
  const parts = [];
  for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]]) {
    if (rest >= size || (unit === "s" && parts.length === 0)) {
      parts.push(`${Math.floor(rest / size)} ${unit}`);
      rest %= size;
    }
  }
  return parts.slice(0, 2).join(" ");
}

/** "1 d 23 h 59 min 58 s": every unit, for a countdown that ticks. */
export function countdown(milliseconds) {
  let rest = Math.max(0, Math.floor(milliseconds / 1000));
  const days = Math.floor(rest / 86400);
  rest %= 86400;
  const hours = Math.floor(rest / 3600);
  rest %= 3600;
  const minutes = Math.floor(rest / 60);
  const parts = [`${hours} h`, `${minutes} min`, `${rest % 60} s`];
  return (days ? [`${days} d`, ...parts] : parts).join(" ");
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "";
  return `${duration((now - new Date(iso).getTime()) / 1000)} ago`;
}

/** A SAS expiry as the countdown shows it: its words and how urgent it is (ok, warn, expired). */
export function expiryState(iso, now = Date.now()) {
  if (!iso) return {level: "warn", text: "never expires (a token without expiry cannot be revoked by time)"};
  const left = new Date(iso).getTime() - now;
  if (left <= 0) return {level: "expired", text: `expired ${duration(-left / 1000)} ago, on ${utc(iso)}: renew it`};
  if (left < WARN_BEFORE_MS) {
    return {level: "warn", text: `expires in ${countdown(left)}, under 7 days: renew it soon (${utc(iso)})`};
  }
  return {level: "ok", text: `expires in ${countdown(left)} (${utc(iso)})`};
}
