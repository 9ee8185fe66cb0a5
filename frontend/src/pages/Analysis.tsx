import { useMemo, useState, type ReactNode } from "react";
import type uPlot from "uplot";
import { api, ApiError, download } from "../api";
import { bars, Chart, COLORS } from "../components/Chart";
import { Select } from "../components/Field";
import { Empty, ErrorBox, Load, Loading } from "../components/States";
import { formatEnergy, formatNumber, formatPercent, formatPeriod, formatPeriodShort } from "../format";
import { useLoad, useSites } from "../hooks";
import { useI18n, type Key } from "../i18n";
import type { Balance, Readings } from "../kpi";
import { useQueryState } from "../router";
import { nextDate, zonedDate, zonedMidnight } from "../time";

const RESOLUTIONS = ["hour", "day", "week", "month"] as const;
const SOURCES = ["", "real", "simulated", "import"] as const;
const MAX_TABLE_ROWS = 500;

export const EXPORTS = [
  { format: "csv", path: "/exports/readings.csv", label: "analysis.csv", file: "readings.csv" },
  { format: "xlsx", path: "/exports/report.xlsx", label: "analysis.xlsx", file: "report.xlsx" },
  { format: "pdf", path: "/exports/report.pdf", label: "analysis.pdf", file: "report.pdf" },
] as const;

interface AnalysisData {
  readings: Readings;
  balance: Balance;
}

export function AnalysisPage(): ReactNode {
  const { t, lang } = useI18n();
  const [query, setQuery] = useQueryState();
  const sites = useSites();
  const known = sites.data ?? [];
  const site = query.get("site") ?? known[0]?.code ?? "";
  const tz = known.find((s) => s.code === site)?.timezone ?? "UTC";
  const today = zonedDate(new Date(), tz);
  const weekAgo = zonedDate(new Date(Date.now() - 7 * 86_400_000), tz);
  const from = query.get("from") ?? weekAgo;
  const to = query.get("to") ?? today;
  const source = query.get("source") ?? "";
  const resolution = query.get("resolution") ?? "day";
  const badRange = to < from;
  // Exactly what is shown is what the exports are asked for.
  const params = useMemo(
    () => ({ site, start: zonedMidnight(from, tz), end: zonedMidnight(nextDate(to), tz), source: source || null, resolution }),
    [site, from, to, tz, source, resolution],
  );
  const state = useLoad<AnalysisData>(
    site && !badRange && sites.data ? `analysis|${JSON.stringify(params)}` : null,
    async (signal) => {
      const path = `/sites/${encodeURIComponent(site)}`;
      const range = { start: params.start, end: params.end, source: params.source };
      const [readings, balance] = await Promise.all([
        api<Readings>(`${path}/readings`, { query: { ...range, resolution }, signal }),
        api<Balance>(`${path}/balance`, { query: range, signal }),
      ]);
      return { readings, balance };
    },
  );

  return (
    <section className="analysis">
      <div className="page-head">
        <h1>{t("analysis.title")}</h1>
      </div>
      <div className="card filters-card">
        <div className="filters">
          <Select name="site" label={t("filter.site")} value={site} options={known.map((s) => ({ value: s.code, label: s.name }))}
            onChange={(v) => setQuery({ site: v })} />
          <label className="field">
            <span>{t("filter.from")}</span>
            <input type="date" name="from" data-testid="filter-from" value={from} max={to} onChange={(e) => setQuery({ from: e.target.value })} />
          </label>
          <label className="field">
            <span>{t("filter.to")}</span>
            <input type="date" name="to" data-testid="filter-to" value={to} min={from} onChange={(e) => setQuery({ to: e.target.value })} />
          </label>
          <Select name="source" label={t("filter.source")} value={source}
            options={SOURCES.map((s) => ({ value: s, label: t(`source.${s || "all"}` as Key) }))}
            onChange={(v) => setQuery({ source: v })} />
          <Select name="resolution" label={t("filter.resolution")} value={resolution}
            options={RESOLUTIONS.map((r) => ({ value: r, label: t(`resolution.${r}` as Key) }))}
            onChange={(v) => setQuery({ resolution: v })} />
        </div>
        {site && !badRange && <Exports params={params} />}
      </div>
      {sites.error && !sites.data ? (
        <ErrorBox error={sites.error} onRetry={sites.reload} />
      ) : !sites.data ? (
        <Loading />
      ) : badRange ? (
        <div className="state state-error">{t("analysis.badRange")}</div>
      ) : !site ? (
        <Empty />
      ) : (
        <Load state={state} isEmpty={(d) => d.readings.items.length === 0}>
          {(d) => (
            <>
              <div className="kpis" data-testid="analysis-summary">
                <div className="kpi"><div className="kpi-label">{t("kpi.consumed")}</div><div className="kpi-value">{formatEnergy(d.balance.consumed_kwh, lang)}</div></div>
                <div className="kpi"><div className="kpi-label">{t("kpi.produced")}</div><div className="kpi-value">{formatEnergy(d.balance.produced_kwh, lang)}</div></div>
                <div className="kpi"><div className="kpi-label">{t("kpi.coverage")}</div><div className="kpi-value">{formatPercent(d.balance.coverage_rate, lang)}</div></div>
              </div>
              <div className="card">
                <AnalysisChart readings={d.readings} timeZone={tz} />
              </div>
              <ReadingsTable readings={d.readings} timeZone={tz} />
            </>
          )}
        </Load>
      )}
    </section>
  );
}

function Exports({ params }: { params: Record<string, string | null> }): ReactNode {
  const { t } = useI18n();
  const [busy, setBusy] = useState<string | null>(null);
  const [result, setResult] = useState<{ ok: string } | { error: ApiError; format: string } | null>(null);
  const run = async (e: (typeof EXPORTS)[number]): Promise<void> => {
    setBusy(e.format);
    setResult(null);
    try {
      const name = await download(e.path, params, e.file);
      setResult({ ok: name });
    } catch (exc) {
      if (exc instanceof ApiError) setResult({ error: exc, format: t(e.label) });
      else setResult({ error: new ApiError(0, "ClientError", String(exc), "other"), format: t(e.label) });
    } finally {
      setBusy(null);
    }
  };
  return (
    <div className="exports">
      <span className="muted">{t("analysis.export")} :</span>
      {EXPORTS.map((e) => (
        <button key={e.format} type="button" disabled={busy !== null} data-testid={`export-${e.format}`} onClick={() => void run(e)}>
          {busy === e.format ? "…" : t(e.label)}
        </button>
      ))}
      {result && "ok" in result && <span className="ok" data-testid="export-done">{t("analysis.exported", { name: result.ok })}</span>}
      {result && "error" in result && <ErrorBox error={result.error} what={t("analysis.exportWhat", { format: result.format })} />}
    </div>
  );
}

function AnalysisChart({ readings, timeZone }: { readings: Readings; timeZone: string }): ReactNode {
  const { t, lang } = useI18n();
  const hourly = readings.resolution === "hour";
  // Hours on a time axis; days, weeks and months as labelled bars side by side.
  const [labels, data] = useMemo<[string[] | undefined, uPlot.AlignedData]>(
    () => [
      hourly ? undefined : readings.items.map((b) => formatPeriodShort(b.ts, readings.resolution, lang, timeZone)),
      [
        hourly ? readings.items.map((b) => Date.parse(b.ts) / 1000) : readings.items.map((_, i) => i),
        readings.items.map((b) => b.consumption_kwh),
        readings.items.map((b) => b.production_kwh),
      ],
    ],
    [readings, hourly, lang, timeZone],
  );
  const fmt = (_u: uPlot, v: number | null): string => (v === null ? "—" : formatEnergy(v, lang));
  return (
    <Chart
      testId="analysis-chart"
      configKey={readings.resolution}
      lang={lang}
      fromZero
      xLabels={labels}
      xTitle={t("analysis.period")}
      data={data}
      timeZone={timeZone}
      series={[
        { label: t("chart.consumption"), stroke: COLORS.consumption, width: 1.5, value: fmt,
          ...(hourly ? {} : { fill: "rgba(185, 28, 28, 0.45)", paths: bars(-1), points: { show: false } }) },
        { label: t("chart.production"), stroke: COLORS.production, width: 1.5, value: fmt,
          ...(hourly ? {} : { fill: "rgba(21, 128, 61, 0.45)", paths: bars(1), points: { show: false } }) },
      ]}
    />
  );
}

function ReadingsTable({ readings, timeZone }: { readings: Readings; timeZone: string }): ReactNode {
  const { t, lang } = useI18n();
  const rows = readings.items.slice(0, MAX_TABLE_ROWS);
  return (
    <div className="card">
      <div className="card-head">
        <h2>{t("analysis.table")}</h2>
        <span className="muted" data-testid="analysis-rows" data-value={readings.items.length}>
          {t("analysis.rows", { n: formatNumber(readings.items.length, lang) })}
        </span>
      </div>
      <div className="table-wrap">
        <table data-testid="readings-table">
          <thead>
            <tr>
              <th>{t("analysis.period")}</th>
              <th className="num">{t("kpi.consumed")}</th>
              <th className="num">{t("kpi.produced")}</th>
              <th className="num">{t("analysis.balance")}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((b) => (
              <tr key={b.ts}>
                <td>{formatPeriod(b.ts, readings.resolution, lang, timeZone)}</td>
                <td className="num">{formatEnergy(b.consumption_kwh, lang)}</td>
                <td className="num">{formatEnergy(b.production_kwh, lang)}</td>
                <td className={`num ${b.production_kwh < b.consumption_kwh ? "neg" : ""}`}>
                  {formatEnergy(b.production_kwh - b.consumption_kwh, lang)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
