// Axis and legend labels in the operator's language and the site's time zone (uPlot's own
// defaults are US English in the browser's zone).
import type { Lang } from "../format";

const LOCALE: Record<Lang, string> = { fr: "fr-FR", en: "en-GB" };
const DAY_S = 86_400;

function parts(lang: Lang, timeZone: string | undefined, opts: Intl.DateTimeFormatOptions): (ts: number) => string {
  const f = new Intl.DateTimeFormat(LOCALE[lang], { timeZone, ...opts });
  return (ts) => f.format(new Date(ts * 1000));
}

/** Tick labels for a time axis: hours within a day, dates across days, months across months. */
export function timeTicks(lang: Lang, timeZone?: string): (splits: number[], incr: number) => string[] {
  const hm = parts(lang, timeZone, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const dm = parts(lang, timeZone, { day: "2-digit", month: "2-digit" });
  const my = parts(lang, timeZone, { month: "short", year: "numeric" });
  return (splits, incr) => {
    let lastDay = "";
    return splits.map((ts) => {
      if (incr >= 28 * DAY_S) return my(ts);
      const day = dm(ts);
      if (incr >= DAY_S) return day;
      const label = day !== lastDay ? `${hm(ts)}\n${day}` : hm(ts);
      lastDay = day;
      return label;
    });
  };
}

/** The legend's instant: date and hour in the site's zone. */
export function timeValue(lang: Lang, timeZone?: string): (ts: number | null) => string {
  const full = parts(lang, timeZone, {
    day: "2-digit",
    month: "2-digit",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  return (ts) => (ts === null || ts === undefined ? "—" : full(ts));
}

/** Tick labels for a value axis, with the language's separators. */
export function numberTicks(lang: Lang): (splits: number[]) => string[] {
  const f = new Intl.NumberFormat(LOCALE[lang], { maximumFractionDigits: 2 });
  return (splits) => splits.map((v) => f.format(v));
}
