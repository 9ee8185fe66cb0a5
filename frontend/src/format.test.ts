import { describe, expect, it } from "vitest";
import { formatDateTime, formatEnergy, formatPercent, formatPeriod, parseEnergy } from "./format";

const plain = (s: string): string => s.replace(/[\u00a0\u202f]/g, " ");

describe("formatEnergy", () => {
  it("uses French separators and switches to MWh at 10 MWh", () => {
    expect(plain(formatEnergy(1234.56, "fr"))).toBe("1 235 kWh");
    expect(plain(formatEnergy(42.26, "fr"))).toBe("42,3 kWh");
    expect(plain(formatEnergy(123456, "fr"))).toBe("123,5 MWh");
    expect(formatEnergy(123456, "en")).toBe("123.5 MWh");
  });

  it("shows a dash for a missing value", () => {
    expect(formatEnergy(null, "fr")).toBe("—");
    expect(formatEnergy(Number.NaN, "en")).toBe("—");
  });

  it("round-trips through parseEnergy within the display precision", () => {
    for (const kwh of [0.4, 42.26, 999.4, 9_876.5, 123_456.7]) {
      for (const lang of ["fr", "en"] as const) {
        const back = parseEnergy(formatEnergy(kwh, lang), lang);
        const step = kwh >= 10_000 ? 50 : kwh >= 100 ? 0.5 : 0.05;
        expect(Math.abs(back - kwh)).toBeLessThanOrEqual(step);
      }
    }
  });
});

describe("formatPercent and dates", () => {
  it("prints a ratio as a percentage with one decimal", () => {
    expect(plain(formatPercent(0.8734, "fr"))).toBe("87,3 %");
    expect(formatPercent(0.8734, "en")).toBe("87.3%");
    expect(formatPercent(null, "fr")).toBe("—");
  });

  it("prints instants in the site's time zone", () => {
    expect(formatDateTime("2026-01-15T13:00:00Z", "fr", "Europe/Paris")).toBe("15/01/2026 14:00");
    expect(formatDateTime("2026-07-15T13:00:00Z", "fr", "Europe/Paris")).toBe("15/07/2026 15:00");
  });

  it("prints a bucket as its resolution reads", () => {
    expect(formatPeriod("2026-03-01T00:00:00+01:00", "month", "fr", "Europe/Paris")).toBe("mars 2026");
    expect(formatPeriod("2026-03-29T00:00:00+01:00", "day", "fr", "Europe/Paris")).toBe("29/03/2026");
    expect(formatPeriod("2026-03-29T03:00:00+02:00", "hour", "fr", "Europe/Paris")).toBe("29/03/2026 03:00");
  });
});
