// Number and date formatting for operators: French by default, units always shown.

export type Lang = "fr" | "en";
const LOCALE: Record<Lang, string> = { fr: "fr-FR", en: "en-GB" };
const cache = new Map<string, Intl.NumberFormat>();

function nf(lang: Lang, digits: number, style: "decimal" | "percent" = "decimal"): Intl.NumberFormat {
  const key = `${lang}|${digits}|${style}`;
  let f = cache.get(key);
  if (!f) {
    f = new Intl.NumberFormat(LOCALE[lang], {
      style,
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
    cache.set(key, f);
  }
  return f;
}

/** A number with a fixed count of decimals in the language's style ("12 345,6"). */
export function formatNumber(value: number, lang: Lang, digits = 0): string {
  return nf(lang, digits).format(value);
}

/** Energy: kWh below 10 MWh (1 decimal under 100 kWh), MWh above (1 decimal). */
export function formatEnergy(kwh: number | null | undefined, lang: Lang): string {
  if (kwh === null || kwh === undefined || !Number.isFinite(kwh)) return "—";
  const abs = Math.abs(kwh);
  if (abs >= 10_000) return `${formatNumber(kwh / 1000, lang, 1)} MWh`;
  return `${formatNumber(kwh, lang, abs < 100 ? 1 : 0)} kWh`;
}

/** A ratio (0.873) as a percentage with one decimal ("87,3 %"). */
export function formatPercent(ratio: number | null | undefined, lang: Lang, digits = 1): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return "—";
  return nf(lang, digits, "percent").format(ratio);
}

/** An instant in a time zone, e.g. "15/01/2026 14:00". */
export function formatDateTime(
  value: string | number | Date,
  lang: Lang,
  timeZone?: string,
  withSeconds = false,
): string {
  const date = value instanceof Date ? value : new Date(typeof value === "number" ? value * 1000 : value);
  if (Number.isNaN(date.getTime())) return "—";
  return new Intl.DateTimeFormat(LOCALE[lang], {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: withSeconds ? "2-digit" : undefined,
  }).format(date);
}

/** Only the time of an instant ("14:05:09"). */
export function formatTime(value: Date, lang: Lang): string {
  return new Intl.DateTimeFormat(LOCALE[lang], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).format(value);
}

/** Parse what formatEnergy printed in ``lang`` back to kWh (tests and sanity checks). */
export function parseEnergy(text: string, lang: Lang): number {
  const compact = text.replace(/[\s\u00a0\u202f]/g, "");
  const match = /(-?[\d.,]+)(MWh|kWh)/.exec(compact);
  if (!match) return Number.NaN;
  // French: "," is the decimal mark; English: "," groups thousands.
  const n = Number(lang === "fr" ? match[1].replace(",", ".") : match[1].replace(/,/g, ""));
  return match[2] === "MWh" ? n * 1000 : n;
}

/** A bucket's start as its resolution reads: hour → date and time, day/week → date, month. */
export function formatPeriod(value: string, resolution: string, lang: Lang, timeZone?: string): string {
  if (resolution === "hour" || resolution === "raw") return formatDateTime(value, lang, timeZone);
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "—";
  const opts: Intl.DateTimeFormatOptions =
    resolution === "month"
      ? { timeZone, month: "long", year: "numeric" }
      : { timeZone, day: "2-digit", month: "2-digit", year: "numeric" };
  return new Intl.DateTimeFormat(LOCALE[lang], opts).format(date);
}

/** A short bucket label for chart axes: "17/11" for days and weeks, "nov. 26" for months. */
export function formatPeriodShort(value: string, resolution: string, lang: Lang, timeZone?: string): string {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "—";
  const opts: Intl.DateTimeFormatOptions =
    resolution === "month" ? { timeZone, month: "short", year: "2-digit" } : { timeZone, day: "2-digit", month: "2-digit" };
  return new Intl.DateTimeFormat(LOCALE[lang], opts).format(date);
}
