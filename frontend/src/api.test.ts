import { describe, expect, it } from "vitest";
import { classify, hasRole, withQuery } from "./api";
import {
  parseForecast,
  parseJob,
  parseRisks,
  percentToRatio,
  riskThreshold,
  type EffectiveRuleOut,
  type ForecastOut,
  type JobOut,
  type RiskOut,
} from "./forecast";
import forecastFixture from "./fixtures/forecast.json";
import jobFixture from "./fixtures/job.json";
import riskFixture from "./fixtures/risk.json";
import rulesFixture from "./fixtures/site-rules.json";

describe("classify", () => {
  it("tells a missing route from a named not-found", () => {
    expect(classify(404, "NotFound", "Not Found")).toBe("missing");
    expect(classify(404, "SiteNotFound", "no site 'X'")).toBe("input");
    expect(classify(405, "MethodNotAllowed", "Method Not Allowed")).toBe("missing");
  });

  it("sorts service, network and session failures", () => {
    expect(classify(503, "ServiceUnavailable", "the alerts service is not answering")).toBe("unavailable");
    expect(classify(0, "NetworkError", "")).toBe("network");
    expect(classify(401, "NotAuthenticated", "expired")).toBe("auth");
    expect(classify(403, "Forbidden", "")).toBe("forbidden");
  });
});

describe("roles and queries", () => {
  it("ranks roles", () => {
    expect(hasRole({ username: "v", role: "viewer" }, "operator")).toBe(false);
    expect(hasRole({ username: "o", role: "operator" }, "operator")).toBe(true);
    expect(hasRole({ username: "a", role: "admin" }, "operator")).toBe(true);
    expect(hasRole(null, "viewer")).toBe(false);
  });

  it("drops empty parameters and encodes offsets", () => {
    expect(withQuery("/x", { a: "2026-01-01T00:00:00+01:00", b: null, c: "", d: 3 })).toBe(
      "/x?a=2026-01-01T00%3A00%3A00%2B01%3A00&d=3",
    );
  });
});

describe("forecast answers", () => {
  // The fixtures are validated against the forecast and alerts services' response models by
  // tests/forecast/test_ui_fixtures.py, so these tests read what the API really sends.
  it("reads points, interval and model quality by the API's field names", () => {
    const f = parseForecast(forecastFixture as ForecastOut);
    expect(f.points.map((p) => p.forecast)).toEqual([9, 12]);
    expect(f.points[1]).toMatchObject({ lower: 10, upper: 14, baseline: 11 });
    expect(f.metrics.mape).toBeCloseTo(0.041);
    expect(f.metrics.coverage).toBeCloseTo(0.81);
    expect(f.metrics.skill).toBeCloseTo(0.23);
    expect(f.metrics).toMatchObject({ servedBaseline: false, trainedAt: "2026-01-15T11:00:02Z" });
    // A very good model: 1.2 % must not be read as a ratio of 120 %.
    const good = structuredClone(forecastFixture) as ForecastOut;
    good.model_run.metrics.mape = 1.2;
    good.served = "baseline";
    expect(parseForecast(good).metrics).toMatchObject({ servedBaseline: true });
    expect(parseForecast(good).metrics.mape).toBeCloseTo(0.012);
    expect(percentToRatio(null)).toBeNull();
  });

  it("maps job statuses to four states", () => {
    const job = jobFixture as JobOut;
    expect(parseJob(job)).toMatchObject({ id: "3", status: "running", progress: 0.4, detail: "backtesting" });
    expect(parseJob({ ...job, status: "succeeded", progress: 0.9 })).toMatchObject({ status: "done", progress: 1 });
    expect(parseJob({ ...job, status: "failed", error: "too little history" })).toMatchObject({
      status: "failed",
      detail: "too little history",
    });
  });

  it("ranks scored equipment by probability, then the unscored with their reason", () => {
    const r = parseRisks(riskFixture as RiskOut);
    expect(r.map((i) => i.equipment)).toEqual(["P2", "P1", "P0"]);
    expect(r[0].factors[0]).toEqual({ name: "vibration rising for 3 days (7.4 mm/s)", weight: 0.3 });
    expect(r[2]).toMatchObject({ probability: null, status: "insufficient data", message: "2 days of telemetry; 14 needed" });
  });

  it("takes the alert threshold from the site's enabled equipment-risk rules", () => {
    const rules = rulesFixture as EffectiveRuleOut[];
    expect(riskThreshold(rules)).toBe(0.7);
    expect(riskThreshold(rules.map((r) => ({ ...r, enabled: true })))).toBe(0.5);
    expect(riskThreshold(rules.filter((r) => r.kind !== "equipment_risk"))).toBeNull();
  });
});
