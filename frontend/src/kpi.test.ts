import { describe, expect, it } from "vitest";
import { combineBalances, currentDeficit, mergeHourly, type Balance, type Readings } from "./kpi";

const balance = (over: Partial<Balance>): Balance => ({
  site: "A",
  consumed_kwh: 0,
  produced_kwh: 0,
  coverage_rate: null,
  deficit_kwh: 0,
  deficit_hours: 0,
  n_readings: 0,
  last_ts: null,
  ...over,
});

const readings = (site: string, rows: [string, number, number][]): Readings => ({
  site,
  timezone: "Europe/Paris",
  resolution: "hour",
  items: rows.map(([ts, c, p]) => ({ ts, consumption_kwh: c, production_kwh: p })),
});

describe("combineBalances", () => {
  it("keeps one site's figures exactly as the API gave them", () => {
    const k = combineBalances([balance({ consumed_kwh: 100, produced_kwh: 40, coverage_rate: 0.4, deficit_hours: 7 })]);
    expect(k).toMatchObject({ consumedKwh: 100, producedKwh: 40, coverageRate: 0.4, deficitHours: 7 });
  });

  it("takes the coverage of the sums, not the mean of the rates", () => {
    const k = combineBalances([
      balance({ consumed_kwh: 100, produced_kwh: 100, coverage_rate: 1 }),
      balance({ site: "B", consumed_kwh: 300, produced_kwh: 0, coverage_rate: 0 }),
    ]);
    expect(k.consumedKwh).toBe(400);
    expect(k.coverageRate).toBeCloseTo(0.25);
  });

  it("has no coverage when nothing was consumed", () => {
    expect(combineBalances([balance({}), balance({ site: "B" })]).coverageRate).toBeNull();
  });
});

describe("mergeHourly and currentDeficit", () => {
  it("sums sites hour by hour across UTC offsets and sorts by time", () => {
    const s = mergeHourly([
      readings("A", [
        ["2026-01-15T01:00:00+01:00", 10, 2],
        ["2026-01-15T00:00:00+01:00", 5, 1],
      ]),
      readings("B", [["2026-01-15T00:00:00Z", 3, 4]]),
    ]);
    expect(s.ts).toEqual([Date.parse("2026-01-14T23:00:00Z") / 1000, Date.parse("2026-01-15T00:00:00Z") / 1000]);
    expect(s.consumption).toEqual([5, 13]);
    expect(s.production).toEqual([1, 6]);
    expect(s.deficitTop).toEqual([5, 13]);
  });

  it("puts the deficit band's top on production when there is a surplus", () => {
    const s = mergeHourly([readings("A", [["2026-01-15T12:00:00Z", 4, 9]])]);
    expect(s.deficitTop).toEqual([9]);
    expect(currentDeficit(s)).toEqual({ kwh: 0, ts: Date.parse("2026-01-15T12:00:00Z") / 1000 });
  });

  it("reports the latest hour's deficit, or nothing without data", () => {
    const s = mergeHourly([readings("A", [["2026-01-15T00:00:00Z", 1, 0], ["2026-01-15T01:00:00Z", 12.5, 2.5]])]);
    expect(currentDeficit(s)?.kwh).toBe(10);
    expect(currentDeficit(mergeHourly([readings("A", [])]))).toBeNull();
  });
});
