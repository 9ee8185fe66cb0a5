import { describe, expect, it } from "vitest";
import { classify, hasRole, withQuery } from "./api";
import { asRatio, parseForecast, parseJob, parseRisks, percentToRatio } from "./forecast";

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
  it("reads points, intervals and metrics whatever the field names", () => {
    const f = parseForecast({
      model_run: { metrics: { mape: 4.1, interval_coverage: 0.81, skill_vs_best_naive: 0.23 }, finished_at: "2026-01-15T02:00:00Z" },
      items: [
        { ts: "2026-01-16T01:00:00Z", predicted_kwh: 12, lower_kwh: 10, upper_kwh: 14, baseline_kwh: 11 },
        { ts: "2026-01-16T00:00:00Z", yhat: 9, p10: 8, p90: 10 },
      ],
    });
    expect(f.points.map((p) => p.forecast)).toEqual([9, 12]);
    expect(f.points[1]).toMatchObject({ lower: 10, upper: 14, baseline: 11 });
    expect(f.metrics.mape).toBeCloseTo(0.041);
    expect(f.metrics.coverage).toBeCloseTo(0.81);
    expect(f.metrics.skill).toBeCloseTo(0.23);
    expect(asRatio(0.5)).toBe(0.5);
    // A very good model: 1.2 % must not be read as a ratio of 120 %.
    expect(parseForecast({ metrics: { mape: 1.2 } }).metrics.mape).toBeCloseTo(0.012);
    expect(percentToRatio(null)).toBeNull();
  });

  it("maps job statuses and progress scales to four states", () => {
    expect(parseJob({ id: 3, status: "running", progress: 40 })).toMatchObject({ id: "3", status: "running", progress: 0.4 });
    expect(parseJob({ job_id: "x", status: "succeeded" })).toMatchObject({ status: "done", progress: 1 });
    expect(parseJob({ id: 1, status: "error", error: "too little history" })).toMatchObject({
      status: "failed",
      detail: "too little history",
    });
  });

  it("ranks equipment by probability", () => {
    const r = parseRisks({
      threshold: 0.7,
      items: [
        { equipment_code: "P0", probability: null, status: "insufficient data" },
        { equipment: "P1", probability: 0.2 },
        { equipment: "P2", probability: 0.9, top_factors: [{ factor: "vibration rising", feature: "vib_trend", contribution: 0.3 }] },
      ],
    });
    expect(r.items.map((i) => i.equipment)).toEqual(["P2", "P1", "P0"]);
    expect(r.items[0].factors[0]).toEqual({ name: "vibration rising", weight: 0.3 });
    expect(r.items[2]).toMatchObject({ probability: null, status: "insufficient data" });
    expect(r.threshold).toBe(0.7);
  });
});
