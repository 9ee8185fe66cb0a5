import { useMemo, type ReactNode } from "react";
import type uPlot from "uplot";
import { api, ApiError } from "../api";
import { Chart, COLORS } from "../components/Chart";
import { Select } from "../components/Field";
import { Empty, ErrorBox, Load, Loading, serviceOf } from "../components/States";
import { formatDateTime, formatEnergy, formatNumber, formatPercent, formatTime } from "../format";
import { useLoad, useSites } from "../hooks";
import { useI18n, type Key } from "../i18n";
import { combineBalances, currentDeficit, mergeHourly, type Balance, type Readings } from "../kpi";
import { useQueryState } from "../router";
import { lastDays, RANGES, type Range, type RangeKey } from "../time";

const POLL_MS = 30_000;

interface CockpitData {
  range: Range;
  balances: Balance[];
  series: ReturnType<typeof mergeHourly>;
}

async function loadCockpit(codes: string[], days: number, signal: AbortSignal): Promise<CockpitData> {
  // Computed at each (re)load, so live polling follows the clock.
  const range = lastDays(days);
  const query = { start: range.start, end: range.end };
  const [balances, readings] = await Promise.all([
    Promise.all(codes.map((c) => api<Balance>(`/sites/${encodeURIComponent(c)}/balance`, { query, signal }))),
    Promise.all(
      codes.map((c) =>
        api<Readings>(`/sites/${encodeURIComponent(c)}/readings`, { query: { ...query, resolution: "hour" }, signal }),
      ),
    ),
  ]);
  return { range, balances, series: mergeHourly(readings) };
}

interface Page {
  items: unknown[];
  next_before_id: number | null;
}

/** Open (open or acknowledged) critical incidents, at most 1000 counted per status. */
async function loadCritical(site: string | null, signal: AbortSignal): Promise<{ count: number; more: boolean }> {
  const pages = await Promise.all(
    ["open", "acknowledged"].map((status) =>
      api<Page>("/incidents", { query: { severity: "critical", status, site, limit: 1000 }, signal }),
    ),
  );
  return {
    count: pages.reduce((n, p) => n + p.items.length, 0),
    more: pages.some((p) => p.next_before_id !== null),
  };
}

export function CockpitPage(): ReactNode {
  const { t } = useI18n();
  const [query, setQuery] = useQueryState();
  const sites = useSites();
  const site = query.get("site") ?? "ALL";
  const rangeKey = (query.get("range") ?? "7d") as RangeKey;
  const days = RANGES[rangeKey] ?? 7;
  // ?refresh=N polls every N s (at least 2): a wall screen may want it faster, tests do.
  const refreshS = Number(query.get("refresh"));
  const pollMs = Number.isFinite(refreshS) && refreshS >= 2 ? refreshS * 1000 : POLL_MS;
  const known = sites.data ?? [];
  const codes = site === "ALL" ? known.map((s) => s.code) : [site];
  const tz = site === "ALL" ? undefined : known.find((s) => s.code === site)?.timezone;

  const data = useLoad<CockpitData>(
    sites.data && codes.length ? `${codes.join(",")}|${days}` : null,
    (signal) => loadCockpit(codes, days, signal),
    pollMs,
  );
  const critical = useLoad(`critical|${site}`, (signal) => loadCritical(site === "ALL" ? null : site, signal), pollMs);

  const rangeOptions = (Object.keys(RANGES) as RangeKey[]).map((k) => ({ value: k, label: t(`range.${k}` as Key) }));
  return (
    <section className="cockpit">
      <div className="page-head">
        <h1>{t("cockpit.title")}</h1>
        <div className="filters">
          <Select
            name="site"
            label={t("filter.site")}
            value={site}
            options={[{ value: "ALL", label: t("filter.allSites") }, ...known.map((s) => ({ value: s.code, label: s.name }))]}
            onChange={(v) => setQuery({ site: v === "ALL" ? null : v })}
          />
          <Select name="range" label={t("filter.range")} value={rangeKey} options={rangeOptions} onChange={(v) => setQuery({ range: v })} />
        </div>
        <LiveBadge updatedAt={data.updatedAt} refreshing={data.refreshing} />
      </div>
      {sites.error && !sites.data ? (
        <ErrorBox error={sites.error} onRetry={sites.reload} />
      ) : !sites.data ? (
        <Loading />
      ) : known.length === 0 ? (
        <Empty />
      ) : (
        <Load state={data}>
          {(d) => (
            <>
              <KpiCards data={d} critical={critical} timeZone={tz} />
              <div className="card">
                <h2>{t("chart.hourly")}</h2>
                {d.series.ts.length === 0 ? (
                  <Empty />
                ) : (
                  <HourlyChart series={d.series} timeZone={tz} />
                )}
              </div>
            </>
          )}
        </Load>
      )}
    </section>
  );
}

function LiveBadge({ updatedAt, refreshing }: { updatedAt?: Date; refreshing: boolean }): ReactNode {
  const { t, lang } = useI18n();
  if (!updatedAt) return null;
  return (
    <span className={`live ${refreshing ? "busy" : ""}`} data-testid="live-badge">
      <span className="dot" aria-hidden="true" />
      {refreshing ? t("live.refreshing") : t("live.updated", { time: formatTime(updatedAt, lang) })}
    </span>
  );
}

function KpiCards({
  data,
  critical,
  timeZone,
}: {
  data: CockpitData;
  critical: ReturnType<typeof useLoad<{ count: number; more: boolean }>>;
  timeZone?: string;
}): ReactNode {
  const { t, lang } = useI18n();
  const kpis = combineBalances(data.balances);
  const now = currentDeficit(data.series);
  const criticalError: ApiError | undefined = critical.data ? undefined : critical.error;
  return (
    <div className="kpis" data-testid="kpis" data-start={data.range.start} data-end={data.range.end}>
      <Kpi id="consumed" label={t("kpi.consumed")} value={kpis.consumedKwh} text={formatEnergy(kpis.consumedKwh, lang)} />
      <Kpi id="produced" label={t("kpi.produced")} value={kpis.producedKwh} text={formatEnergy(kpis.producedKwh, lang)} />
      <Kpi
        id="coverage"
        label={t("kpi.coverage")}
        value={kpis.coverageRate}
        text={formatPercent(kpis.coverageRate, lang)}
        tone={kpis.coverageRate !== null && kpis.coverageRate < 1 ? "warn" : "ok"}
        note={t("kpi.deficitHours", { n: formatNumber(kpis.deficitHours, lang) })}
      />
      <Kpi
        id="deficit"
        label={t("kpi.deficitNow")}
        value={now?.kwh ?? null}
        text={formatEnergy(now?.kwh ?? null, lang)}
        tone={now && now.kwh > 0 ? "bad" : "ok"}
        note={now ? t("kpi.deficitAt", { time: formatDateTime(now.ts, lang, timeZone) }) : undefined}
      />
      <Kpi
        id="critical"
        label={t("kpi.critical")}
        value={critical.data?.count ?? null}
        text={critical.data ? `${formatNumber(critical.data.count, lang)}${critical.data.more ? "+" : ""}` : "—"}
        tone={critical.data && critical.data.count > 0 ? "bad" : "ok"}
        note={
          criticalError
            ? criticalError.kind === "unavailable" && serviceOf(criticalError) === "alerts"
              ? t("kpi.alertsDown")
              : criticalError.kind === "missing"
                ? t("state.missing", { what: t("alerts.what") })
                : criticalError.detail
            : undefined
        }
      />
    </div>
  );
}

function Kpi(props: {
  id: string;
  label: string;
  value: number | null;
  text: string;
  note?: string;
  tone?: "ok" | "warn" | "bad";
}): ReactNode {
  return (
    <div className={`kpi tone-${props.tone ?? "plain"}`} data-testid={`kpi-${props.id}`} data-value={props.value ?? ""}>
      <div className="kpi-label">{props.label}</div>
      <div className="kpi-value">{props.text}</div>
      {props.note && <div className="kpi-note">{props.note}</div>}
    </div>
  );
}

function HourlyChart({ series, timeZone }: { series: CockpitData["series"]; timeZone?: string }): ReactNode {
  const { t, lang } = useI18n();
  const data = useMemo<uPlot.AlignedData>(
    () => [series.ts, series.consumption, series.production, series.deficitTop],
    [series],
  );
  const fmt = (v: number | null): string => (v === null || v === undefined ? "—" : formatEnergy(v, lang));
  const uSeries: uPlot.Series[] = [
    { label: t("chart.consumption"), stroke: COLORS.consumption, width: 1.5, value: (_u, v) => fmt(v) },
    { label: t("chart.production"), stroke: COLORS.production, width: 1.5, value: (_u, v) => fmt(v) },
    {
      // Upper edge of the deficit band; its legend shows the deficit itself.
      label: t("chart.deficit"),
      stroke: "transparent",
      width: 0,
      points: { show: false },
      value: (u, _v, _si, i) =>
        i === null || i === undefined ? "—" : fmt(Math.max((u.data[1][i] ?? 0) - (u.data[2][i] ?? 0), 0)),
    },
  ];
  return (
    <Chart
      testId="cockpit-chart"
      configKey="cockpit"
      xTitle={t("chart.time")}
      lang={lang}
      fromZero
      data={data}
      series={uSeries}
      bands={[{ series: [3, 2], fill: COLORS.deficit }]}
      timeZone={timeZone}
      mark="spe:cockpit:first-render"
    />
  );
}
