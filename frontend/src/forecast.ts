// The forecast service's answers as the UI uses them. Its public routes arrive with the
// forecast issue; parsing is tolerant of the field names it may choose, and a missing route
// is shown as "not available yet".

export const FORECAST_PATHS = {
  forecast: (site: string) => `/sites/${encodeURIComponent(site)}/forecast`,
  jobs: "/forecast/jobs",
  job: (id: string | number) => `/forecast/jobs/${encodeURIComponent(String(id))}`,
  risk: "/maintenance/risk",
};

export interface ForecastPoint {
  ts: number;
  forecast: number | null;
  lower: number | null;
  upper: number | null;
  baseline: number | null;
}

export interface ModelMetrics {
  /** mean absolute percentage error, as a ratio (0.041) */
  mape: number | null;
  /** 1 - error / baseline error, as a ratio */
  skill: number | null;
  /** share of actuals inside the interval, as a ratio */
  coverage: number | null;
  trainedAt: string | null;
  servedBaseline: boolean;
}

export interface Forecast {
  points: ForecastPoint[];
  metrics: ModelMetrics;
}

type Json = Record<string, unknown>;

function num(obj: Json | undefined, ...names: string[]): number | null {
  if (!obj) return null;
  for (const n of names) {
    const v = obj[n];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  return null;
}

function str(obj: Json | undefined, ...names: string[]): string | null {
  if (!obj) return null;
  for (const n of names) {
    const v = obj[n];
    if (typeof v === "string") return v;
  }
  return null;
}

/** The forecast service reports MAPE in percent (docs/forecasting.md): 1.2 means 1.2 %. */
export function percentToRatio(v: number | null): number | null {
  return v === null ? null : v / 100;
}

/** A percentage given as 4.1 or as 0.041, as a ratio. */
export function asRatio(v: number | null): number | null {
  if (v === null) return null;
  return Math.abs(v) > 1.5 ? v / 100 : v;
}

/** Read a forecast answer whatever its exact field names. */
export function parseForecast(body: unknown): Forecast {
  const root = (body ?? {}) as Json;
  const list = (root.items ?? root.points ?? root.hours ?? root.forecast ?? []) as Json[];
  const points = (Array.isArray(list) ? list : [])
    .map((p) => ({
      ts: Date.parse(str(p, "ts", "target_ts", "time") ?? "") / 1000,
      forecast: num(p, "forecast", "forecast_kwh", "consumption_kwh", "predicted_kwh", "yhat", "value", "p50"),
      lower: num(p, "lower_kwh", "consumption_lower_kwh", "lower", "p10", "yhat_lower"),
      upper: num(p, "upper_kwh", "consumption_upper_kwh", "upper", "p90", "yhat_upper"),
      baseline: num(p, "baseline_kwh", "naive_kwh", "baseline", "seasonal_naive_kwh"),
    }))
    .filter((p) => Number.isFinite(p.ts))
    .sort((a, b) => a.ts - b.ts);
  const run = (root.model_run ?? root.run ?? {}) as Json;
  const metrics = (run.metrics ?? root.metrics ?? {}) as Json;
  const skill = num(metrics, "skill", "skill_vs_best_naive", "rmse_skill_vs_best_naive", "skill_vs_naive");
  return {
    points,
    metrics: {
      mape: percentToRatio(num(metrics, "mape", "MAPE")),
      skill: skill === null ? null : asRatio(skill),
      coverage: asRatio(num(metrics, "interval_coverage", "coverage")),
      trainedAt: str(run, "finished_at", "trained_at", "created_at"),
      servedBaseline:
        run.promoted === false || root.served === "baseline" || str(root, "model") === "baseline" || run.status === "rejected",
    },
  };
}

export interface Job {
  id: string;
  status: "queued" | "running" | "done" | "failed";
  /** 0..1 */
  progress: number;
  detail: string | null;
}

/** Read a job answer: statuses and progress scales vary, the UI needs four states. */
export function parseJob(body: unknown): Job {
  const j = (body ?? {}) as Json;
  const raw = (str(j, "status", "state") ?? "queued").toLowerCase();
  const status: Job["status"] = ["done", "succeeded", "success", "finished", "completed"].includes(raw)
    ? "done"
    : ["failed", "error", "cancelled"].includes(raw)
      ? "failed"
      : ["running", "started", "training", "in_progress"].includes(raw)
        ? "running"
        : "queued";
  let progress = num(j, "progress", "percent") ?? (status === "done" ? 1 : 0);
  if (progress > 1) progress /= 100;
  return {
    id: String(j.id ?? j.job_id ?? ""),
    status,
    progress: Math.min(Math.max(progress, 0), 1),
    detail: str(j, "error", "detail", "reason", "message"),
  };
}

export interface Risk {
  equipment: string;
  site: string | null;
  name: string | null;
  /** null when the model gave none (insufficient data, in failure: see status) */
  probability: number | null;
  status: string | null;
  factors: { name: string; weight: number | null }[];
}

/** Read the maintenance ranking, highest probability first. */
export function parseRisks(body: unknown): { items: Risk[]; threshold: number } {
  const root = (Array.isArray(body) ? { items: body } : (body ?? {})) as Json;
  const list = (root.items ?? root.equipment ?? []) as Json[];
  const items = (Array.isArray(list) ? list : []).map((r) => {
    const factors = (r.top_factors ?? r.factors ?? []) as unknown[];
    return {
      equipment: str(r, "equipment", "equipment_code", "code") ?? "?",
      site: str(r, "site", "site_code"),
      name: str(r, "name", "equipment_name"),
      probability: asRatio(num(r, "probability", "failure_probability", "risk")),
      status: str(r, "status"),
      factors: (Array.isArray(factors) ? factors : []).slice(0, 3).map((f) =>
        typeof f === "string"
          ? { name: f, weight: null }
          : {
              // "factor" is the sentence ("vibration rising for 3 days"), "feature" its code.
              name: str(f as Json, "factor", "label", "text", "name", "feature") ?? "?",
              weight: num(f as Json, "contribution", "weight", "importance"),
            },
      ),
    };
  });
  // Highest probability first; equipment without one (no usable data) last.
  items.sort((a, b) => (b.probability ?? -1) - (a.probability ?? -1));
  return { items, threshold: asRatio(num(root, "threshold", "alert_threshold")) ?? 0.5 };
}
