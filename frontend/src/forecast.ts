// The forecast service's answers (services/forecast/schemas.py) as the UI uses them, read by
// their real field names: a renamed field must fail the Vitest tests, not quietly show "—".

export const FORECAST_PATHS = {
  forecast: (site: string) => `/sites/${encodeURIComponent(site)}/forecast`,
  jobs: "/forecast/jobs",
  job: (id: string | number) => `/forecast/jobs/${encodeURIComponent(String(id))}`,
  risk: "/maintenance/risk",
  siteRules: (site: string) => `/sites/${encodeURIComponent(site)}/alert-rules`,
};

// --- the API's shapes (the fields the UI reads) ---------------------------------------------

interface ForecastPointOut {
  ts: string;
  consumption_kwh: number | null;
  lower_kwh: number | null;
  upper_kwh: number | null;
  baseline_kwh: number | null;
}

interface ModelRunOut {
  promoted: boolean;
  served: "model" | "baseline" | null;
  /** mape in percent (1.2 = 1.2 %), skill_vs_best_naive and interval_coverage as ratios */
  metrics: Record<string, unknown>;
  finished_at: string | null;
}

export interface ForecastOut {
  site: string;
  served: "model" | "baseline";
  message: string;
  model_run: ModelRunOut;
  points: ForecastPointOut[];
}

export interface JobOut {
  id: number;
  status: "queued" | "running" | "succeeded" | "failed";
  /** 0 to 1 */
  progress: number;
  message: string;
  error: string | null;
}

interface RiskFactorOut {
  name: string | null;
  weight: number | null;
}

interface RiskItemOut {
  equipment: string;
  site: string | null;
  name: string | null;
  probability: number;
  status: string;
  factors: RiskFactorOut[];
}

interface UnscoredOut {
  equipment: string;
  site: string | null;
  name: string | null;
  /** "insufficient data" | "in failure" */
  status: string;
  message: string;
}

export interface RiskOut {
  items: RiskItemOut[];
  unscored: UnscoredOut[];
}

export interface EffectiveRuleOut {
  kind: string;
  enabled: boolean;
  params: Record<string, unknown>;
}

// --- what the pages use -----------------------------------------------------------------------

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
  /** 1 - error / best naive error, as a ratio */
  skill: number | null;
  /** share of actuals inside the interval, as a ratio */
  coverage: number | null;
  trainedAt: string | null;
  servedBaseline: boolean;
}

export interface Forecast {
  points: ForecastPoint[];
  metrics: ModelMetrics;
  message: string;
}

function finite(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** The forecast service reports MAPE in percent (docs/forecasting.md): 1.2 means 1.2 %. */
export function percentToRatio(v: number | null): number | null {
  return v === null ? null : v / 100;
}

export function parseForecast(body: ForecastOut): Forecast {
  const points = body.points
    .map((p) => ({
      ts: Date.parse(p.ts) / 1000,
      forecast: p.consumption_kwh,
      lower: p.lower_kwh,
      upper: p.upper_kwh,
      baseline: p.baseline_kwh,
    }))
    .sort((a, b) => a.ts - b.ts);
  const run = body.model_run;
  return {
    points,
    message: body.message,
    metrics: {
      mape: percentToRatio(finite(run.metrics.mape)),
      skill: finite(run.metrics.skill_vs_best_naive),
      coverage: finite(run.metrics.interval_coverage),
      trainedAt: run.finished_at,
      servedBaseline: body.served === "baseline",
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

export function parseJob(body: JobOut): Job {
  const status = body.status === "succeeded" ? "done" : body.status;
  return {
    id: String(body.id),
    status,
    progress: status === "done" ? 1 : Math.min(Math.max(body.progress, 0), 1),
    detail: body.error ?? (body.message || null),
  };
}

export interface Risk {
  equipment: string;
  site: string | null;
  name: string | null;
  /** null when the model gave none: see status and message */
  probability: number | null;
  status: string;
  message: string | null;
  factors: { name: string; weight: number | null }[];
}

/** Scored equipment, highest probability first, then the unscored ones with their reason. */
export function parseRisks(body: RiskOut): Risk[] {
  const scored: Risk[] = body.items.map((r) => ({
    equipment: r.equipment,
    site: r.site,
    name: r.name,
    probability: r.probability,
    status: r.status,
    message: null,
    factors: r.factors.slice(0, 3).map((f) => ({ name: f.name ?? "?", weight: f.weight })),
  }));
  scored.sort((a, b) => (b.probability ?? 0) - (a.probability ?? 0));
  const unscored: Risk[] = body.unscored.map((u) => ({
    equipment: u.equipment,
    site: u.site,
    name: u.name,
    probability: null,
    status: u.status,
    message: u.message || null,
    factors: [],
  }));
  return [...scored, ...unscored];
}

/**
 * The failure probability at which the alerts service raises an incident for a site: the
 * lowest ``min_probability`` of its enabled equipment-risk rules; null when none is enabled.
 */
export function riskThreshold(rules: EffectiveRuleOut[]): number | null {
  const values = rules
    .filter((r) => r.enabled && r.kind === "equipment_risk")
    .map((r) => finite(r.params.min_probability))
    .filter((v): v is number => v !== null);
  return values.length ? Math.min(...values) : null;
}
