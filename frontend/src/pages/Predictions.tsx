import { useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import type uPlot from "uplot";
import { api, ApiError, hasRole } from "../api";
import { Chart, COLORS } from "../components/Chart";
import { Select } from "../components/Field";
import { Empty, ErrorBox, Load, Loading } from "../components/States";
import { FORECAST_PATHS, parseForecast, parseJob, type Forecast, type ForecastOut, type Job, type JobOut } from "../forecast";
import { formatDateTime, formatEnergy, formatPercent } from "../format";
import { useLoad, useSites } from "../hooks";
import { useI18n } from "../i18n";
import type { Readings } from "../kpi";
import { useQueryState } from "../router";
import { useUser } from "../session";

const DAY_S = 86_400;

interface PredictionData {
  /** null: no forecast issued for this site yet (a retrain issues one) */
  forecast: Forecast | null;
  actual: Map<number, number>;
}

async function loadPrediction(site: string, signal: AbortSignal): Promise<PredictionData> {
  let forecast: Forecast;
  try {
    forecast = parseForecast(await api<ForecastOut>(FORECAST_PATHS.forecast(site), { signal }));
  } catch (exc) {
    if (exc instanceof ApiError && exc.error === "ForecastNotFound") return { forecast: null, actual: new Map() };
    throw exc;
  }
  const actual = new Map<number, number>();
  // The two days before the forecast (and any part of it already measured) as the "actual".
  const first = forecast.points[0]?.ts ?? Math.floor(Date.now() / 1000);
  const last = forecast.points.at(-1)?.ts ?? first;
  const readings = await api<Readings>(`/sites/${encodeURIComponent(site)}/readings`, {
    query: {
      start: new Date((first - 2 * DAY_S) * 1000).toISOString(),
      end: new Date((last + 3600) * 1000).toISOString(),
      resolution: "hour",
    },
    signal,
  }).catch(() => null); // the forecast is still worth showing without the actuals
  for (const b of readings?.items ?? []) actual.set(Date.parse(b.ts) / 1000, b.consumption_kwh);
  return { forecast, actual };
}

export function PredictionsPage(): ReactNode {
  const { t } = useI18n();
  const user = useUser();
  const [query, setQuery] = useQueryState();
  const sites = useSites();
  const known = sites.data ?? [];
  const site = query.get("site") ?? known[0]?.code ?? "";
  const tz = known.find((s) => s.code === site)?.timezone;
  const state = useLoad<PredictionData>(site ? `pred|${site}` : null, (signal) => loadPrediction(site, signal));

  return (
    <section className="predictions">
      <div className="page-head">
        <h1>{t("pred.title")}</h1>
        <div className="filters">
          <Select
            name="site"
            label={t("filter.site")}
            value={site}
            options={known.map((s) => ({ value: s.code, label: s.name }))}
            onChange={(v) => setQuery({ site: v })}
          />
        </div>
        {site && hasRole(user, "operator") && <Regenerate site={site} onDone={state.reload} />}
      </div>
      {sites.error && !sites.data ? (
        <ErrorBox error={sites.error} onRetry={sites.reload} />
      ) : !sites.data ? (
        <Loading />
      ) : !site ? (
        <Empty>{t("pred.pickSite")}</Empty>
      ) : (
        <Load state={state} what={t("pred.what")}>
          {(d) =>
            d.forecast === null || d.forecast.points.length === 0 ? (
              <Empty>{t("pred.noForecast")}</Empty>
            ) : (
              <div className="grid-2">
                <div className="card">
                  <ForecastChart forecast={d.forecast} actual={d.actual} timeZone={tz} />
                </div>
                <Metrics forecast={d.forecast} timeZone={tz} />
              </div>
            )
          }
        </Load>
      )}
    </section>
  );
}

function ForecastChart({
  forecast,
  actual,
  timeZone,
}: {
  forecast: Forecast;
  actual: Map<number, number>;
  timeZone?: string;
}): ReactNode {
  const { t, lang } = useI18n();
  const aligned = useMemo<uPlot.AlignedData>(() => {
    const ts = [...new Set([...actual.keys(), ...forecast.points.map((p) => p.ts)])].sort((a, b) => a - b);
    const byTs = new Map(forecast.points.map((p) => [p.ts, p]));
    const col = (f: (ts: number) => number | null | undefined): (number | null)[] => ts.map((x) => f(x) ?? null);
    return [
      ts,
      col((x) => actual.get(x)),
      col((x) => byTs.get(x)?.forecast),
      col((x) => byTs.get(x)?.upper),
      col((x) => byTs.get(x)?.lower),
      col((x) => byTs.get(x)?.baseline),
    ];
  }, [forecast, actual]);
  const fmt = (v: number | null): string => (v === null || v === undefined ? "—" : formatEnergy(v, lang));
  return (
    <Chart
      testId="forecast-chart"
      configKey="forecast"
      lang={lang}
      fromZero
      data={aligned}
      timeZone={timeZone}
      series={[
        { label: t("pred.actual"), stroke: COLORS.actual, width: 1.5, value: (_u, v) => fmt(v) },
        { label: t("pred.forecast"), stroke: COLORS.forecast, width: 2, value: (_u, v) => fmt(v) },
        { label: `${t("pred.interval")} ↑`, stroke: "rgba(124, 58, 237, 0.35)", width: 1, value: (_u, v) => fmt(v) },
        { label: `${t("pred.interval")} ↓`, stroke: "rgba(124, 58, 237, 0.35)", width: 1, value: (_u, v) => fmt(v) },
        { label: t("pred.baseline"), stroke: COLORS.baseline, width: 1, dash: [6, 4], value: (_u, v) => fmt(v) },
      ]}
      bands={[{ series: [3, 4], fill: COLORS.band }]}
    />
  );
}

function Metrics({ forecast, timeZone }: { forecast: Forecast; timeZone?: string }): ReactNode {
  const { t, lang } = useI18n();
  const m = forecast.metrics;
  return (
    <div className="card metrics" data-testid="model-metrics">
      <h2>{t("pred.metricsTitle")}</h2>
      <ul>
        {m.mape !== null && <li>{t("pred.mape", { v: formatPercent(m.mape, lang) })}</li>}
        {m.skill !== null &&
          (m.skill > 0 && !m.servedBaseline ? (
            <li>{t("pred.skill", { v: formatPercent(m.skill, lang, 0) })}</li>
          ) : (
            <li className="warn">{t("pred.skillWorse")}</li>
          ))}
        {m.coverage !== null && <li>{t("pred.coverage", { v: formatPercent(m.coverage, lang, 0) })}</li>}
        {forecast.message && <li className="muted" data-testid="forecast-message">{forecast.message}</li>}
        {m.trainedAt && <li className="muted">{t("pred.trainedAt", { time: formatDateTime(m.trainedAt, lang, timeZone) })}</li>}
      </ul>
    </div>
  );
}

/** The "Régénérer" button: start a retraining job, follow its progress, reload when done. */
function Regenerate({ site, onDone }: { site: string; onDone: () => void }): ReactNode {
  const { t } = useI18n();
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  useEffect(() => {
    window.clearTimeout(timer.current);
    setJob(null);
    setError(null);
  }, [site]);

  const follow = (id: string): void => {
    timer.current = window.setTimeout(async () => {
      try {
        const next = parseJob(await api<JobOut>(FORECAST_PATHS.job(id)));
        setJob(next);
        if (next.status === "done") onDone();
        else if (next.status !== "failed") follow(id);
      } catch (exc) {
        setError(exc instanceof ApiError ? exc : null);
      }
    }, 1000);
  };

  const start = async (): Promise<void> => {
    setError(null);
    try {
      const started = parseJob(await api<JobOut>(FORECAST_PATHS.jobs, { method: "POST", body: { site } }));
      setJob(started);
      if (started.status === "done") onDone();
      else if (started.status !== "failed") follow(started.id);
    } catch (exc) {
      setError(exc instanceof ApiError ? exc : null);
    }
  };

  const running = job !== null && (job.status === "queued" || job.status === "running");
  return (
    <div className="regenerate" data-testid="regenerate">
      <button type="button" className="primary" disabled={running} onClick={() => void start()} data-testid="regenerate-button">
        {t("pred.regenerate")}
      </button>
      {job && (
        <div className="job" data-testid="job-status" data-status={job.status}>
          {running && <progress max={1} value={job.progress} />}
          <span>
            {job.status === "queued"
              ? t("pred.jobQueued")
              : job.status === "running"
                ? t("pred.jobRunning", { pct: Math.round(job.progress * 100) })
                : job.status === "done"
                  ? t("pred.jobDone")
                  : t("pred.jobFailed", { detail: job.detail ?? "?" })}
          </span>
        </div>
      )}
      {error && <ErrorBox error={error} what={t("pred.what")} />}
    </div>
  );
}
