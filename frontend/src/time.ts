// Time ranges as the API wants them: ISO 8601 instants (UTC), start inclusive, end exclusive.

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

export const RANGES = { "24h": 1, "7d": 7, "30d": 30, "365d": 365 } as const;
export type RangeKey = keyof typeof RANGES;

export interface Range {
  start: string;
  end: string;
}

/** The last ``days`` days ending at the start of the next hour (the current hour included). */
export function lastDays(days: number, now: Date = new Date()): Range {
  const end = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS + HOUR_MS;
  return { start: new Date(end - days * DAY_MS).toISOString(), end: new Date(end).toISOString() };
}

/** Offset of ``timeZone`` from UTC at ``instant``, in minutes (east positive). */
export function zoneOffsetMin(instant: Date, timeZone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(instant);
  const get = (t: string): number => Number(parts.find((p) => p.type === t)?.value ?? 0);
  const asUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return Math.round((asUtc - instant.getTime()) / 60_000);
}

/** Midnight of a calendar date ("2026-01-15") in ``timeZone``, as an ISO instant. */
export function zonedMidnight(date: string, timeZone: string): string {
  const [y, m, d] = date.split("-").map(Number);
  const guess = Date.UTC(y, m - 1, d);
  // Two passes settle the offset even on a DST-change day.
  let t = guess - zoneOffsetMin(new Date(guess), timeZone) * 60_000;
  t = guess - zoneOffsetMin(new Date(t), timeZone) * 60_000;
  return new Date(t).toISOString();
}

/** The calendar date ("2026-01-15") of an instant in ``timeZone``. */
export function zonedDate(instant: Date, timeZone: string): string {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(
    instant,
  );
}

/** The day after a calendar date. */
export function nextDate(date: string): string {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
}
