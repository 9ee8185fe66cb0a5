import { useMemo, type ReactNode } from "react";
import type uPlot from "uplot";
import { api } from "../api";
import { Chart, COLORS } from "../components/Chart";
import { Select } from "../components/Field";
import { Empty, ErrorBox, Load } from "../components/States";
import { FORECAST_PATHS, parseRisks, riskThreshold, type EffectiveRuleOut, type Risk, type RiskOut } from "../forecast";
import { formatNumber, formatPercent } from "../format";
import { useLoad, useSites } from "../hooks";
import { useI18n } from "../i18n";
import { useQueryState } from "../router";
import { lastDays } from "../time";

interface Equipment {
  code: string;
  site: string;
  name: string;
  kind: string;
}

interface TelemetryBucket {
  ts: string;
  vibration_mm_s_avg: number | null;
  temperature_c_avg: number | null;
}

export function MaintenancePage(): ReactNode {
  const { t } = useI18n();
  const [query, setQuery] = useQueryState();
  const sites = useSites();
  const site = query.get("site") ?? "ALL";
  const selected = query.get("equipment");
  const siteParam = site === "ALL" ? null : site;
  const risks = useLoad(`risk|${site}`, async (signal) =>
    parseRisks(await api<RiskOut>(FORECAST_PATHS.risk, { query: { site: siteParam }, signal })),
  );
  // Where the alerts service raises an incident, per site (its equipment-risk rules).
  const siteCodes = siteParam ? [siteParam] : (sites.data ?? []).map((s) => s.code);
  const thresholds = useLoad(siteCodes.length ? `risk-rules|${siteCodes.join(",")}` : null, async (signal) =>
    Object.fromEntries(
      await Promise.all(
        siteCodes.map(async (code) => [
          code,
          riskThreshold(await api<EffectiveRuleOut[]>(FORECAST_PATHS.siteRules(code), { signal })),
        ]),
      ),
    ) as Record<string, number | null>,
  );
  // The equipment list is always there (ingest), so the page is useful before the ranking is.
  const equipment = useLoad(`equipment|${site}`, (signal) =>
    api<Equipment[]>("/equipment", { query: { site: siteParam }, signal }),
  );
  const tz = sites.data?.find((s) => s.code === (siteParam ?? equipment.data?.find((e) => e.code === selected)?.site))?.timezone;

  return (
    <section className="maintenance">
      <div className="page-head">
        <h1>{t("maint.title")}</h1>
        <div className="filters">
          <Select
            name="site"
            label={t("filter.site")}
            value={site}
            options={[
              { value: "ALL", label: t("filter.allSites") },
              ...(sites.data ?? []).map((s) => ({ value: s.code, label: s.name })),
            ]}
            onChange={(v) => setQuery({ site: v === "ALL" ? null : v, equipment: null })}
          />
        </div>
      </div>
      <div className="grid-2">
        <div className="card">
          <h2>{t("maint.ranking")}</h2>
          {risks.error && !risks.data ? (
            <>
              {risks.error.error === "PredictionsNotFound" ? (
                // A normal state of a young installation: no failure model yet.
                <Empty>{t("maint.noRanking")}</Empty>
              ) : (
                <ErrorBox error={risks.error} what={t("maint.what")} onRetry={risks.reload} />
              )}
              <Load state={equipment} isEmpty={(e) => e.length === 0}>
                {(list) => (
                  <ul className="rows" data-testid="equipment-list">
                    {list.map((e) => (
                      <li key={e.code}>
                        <button
                          type="button"
                          className={`row-button ${e.code === selected ? "selected" : ""}`}
                          onClick={() => setQuery({ equipment: e.code })}
                        >
                          <strong>{e.code}</strong> {e.name} <span className="muted">· {e.site}</span>
                        </button>
                      </li>
                    ))}
                  </ul>
                )}
              </Load>
            </>
          ) : (
            <Load state={risks} isEmpty={(r) => r.length === 0}>
              {(r) => (
                <RiskTable
                  items={r}
                  thresholds={thresholds.data ?? null}
                  selected={selected}
                  onSelect={(c) => setQuery({ equipment: c })}
                />
              )}
            </Load>
          )}
        </div>
        <div className="card">
          <h2>{t("maint.trend")}</h2>
          {selected ? <Trend code={selected} timeZone={tz} /> : <Empty>{t("maint.pick")}</Empty>}
        </div>
      </div>
    </section>
  );
}

function RiskTable(props: {
  items: Risk[];
  /** per site: the probability that raises an incident (null: no enabled rule); null: unknown */
  thresholds: Record<string, number | null> | null;
  selected: string | null;
  onSelect: (code: string) => void;
}): ReactNode {
  const { t, lang } = useI18n();
  const threshold = (r: Risk): number | null => (r.site && props.thresholds ? (props.thresholds[r.site] ?? null) : null);
  const distinct = [...new Set(Object.values(props.thresholds ?? {}))];
  return (
    <>
      {distinct.length === 1 && distinct[0] !== null && (
        <p className="muted" data-testid="risk-threshold" data-value={distinct[0]}>
          {t("maint.threshold", { v: formatPercent(distinct[0], lang, 0) })}
        </p>
      )}
      <div className="table-wrap">
        <table data-testid="risk-table">
          <thead>
            <tr>
              <th>{t("maint.equipment")}</th>
              <th>{t("maint.probability")}</th>
              <th>{t("maint.factors")}</th>
            </tr>
          </thead>
          <tbody>
            {props.items.map((r) => {
              const limit = threshold(r);
              const high = r.probability !== null && limit !== null && r.probability >= limit;
              return (
                <tr
                  key={r.equipment}
                  data-equipment={r.equipment}
                  data-probability={r.probability ?? ""}
                  className={`${high ? "risk-high" : ""} ${r.equipment === props.selected ? "selected" : ""}`}
                  onClick={() => props.onSelect(r.equipment)}
                >
                  <td>
                    <strong>{r.equipment}</strong> {r.name && <span className="muted">{r.name}</span>}
                    {r.site && <span className="muted"> · {r.site}</span>}
                  </td>
                  <td className="num">
                    {r.probability === null ? (
                      <span className="muted unscored">{t(r.status === "in failure" ? "maint.inFailure" : "maint.insufficient")}</span>
                    ) : (
                      <>
                        <span className="prob-bar" style={{ width: `${Math.round(r.probability * 100)}%` }} />
                        {formatPercent(r.probability, lang, 0)}
                      </>
                    )}
                  </td>
                  <td>{r.probability === null ? (r.message ?? "—") : r.factors.map((f) => f.name).join(", ") || "—"}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}

function Trend({ code, timeZone }: { code: string; timeZone?: string }): ReactNode {
  const { t, lang } = useI18n();
  const state = useLoad(`telemetry|${code}`, (signal) =>
    api<{ items: TelemetryBucket[] }>(`/equipment/${encodeURIComponent(code)}/telemetry`, {
      query: { ...lastDays(30), resolution: "hour" },
      signal,
    }),
  );
  return (
    <Load state={state} isEmpty={(d) => d.items.length === 0}>
      {(d) => <TrendCharts items={d.items} timeZone={timeZone} lang={lang} t={t} />}
    </Load>
  );
}

function TrendCharts({
  items,
  timeZone,
  lang,
  t,
}: {
  items: TelemetryBucket[];
  timeZone?: string;
  lang: "fr" | "en";
  t: ReturnType<typeof useI18n>["t"];
}): ReactNode {
  const ts = useMemo(() => items.map((i) => Date.parse(i.ts) / 1000), [items]);
  const vib = useMemo<uPlot.AlignedData>(() => [ts, items.map((i) => i.vibration_mm_s_avg)], [ts, items]);
  const temp = useMemo<uPlot.AlignedData>(() => [ts, items.map((i) => i.temperature_c_avg)], [ts, items]);
  const fmt = (digits: number) => (_u: uPlot, v: number | null) => (v === null ? "—" : formatNumber(v, lang, digits));
  return (
    <div data-testid="telemetry-trend">
      <Chart configKey="vib" lang={lang} data={vib} timeZone={timeZone} height={160}
        series={[{ label: t("maint.vibration"), stroke: COLORS.consumption, width: 1, value: fmt(2) }]} />
      <Chart configKey="temp" lang={lang} data={temp} timeZone={timeZone} height={160}
        series={[{ label: t("maint.temperature"), stroke: COLORS.bar, width: 1, value: fmt(1) }]} />
    </div>
  );
}
