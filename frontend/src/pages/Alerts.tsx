import { useEffect, useMemo, useState, type ReactNode } from "react";
import type uPlot from "uplot";
import { api, ApiError, hasRole } from "../api";
import { bars, Chart, COLORS } from "../components/Chart";
import { Select } from "../components/Field";
import { Empty, ErrorBox, Load, Loading } from "../components/States";
import { formatDateTime, formatEnergy, formatNumber } from "../format";
import { useLoad, useSites } from "../hooks";
import { useI18n, type Key } from "../i18n";
import { useQueryState } from "../router";
import { useUser } from "../session";
import { lastDays, RANGES, type RangeKey } from "../time";

const POLL_MS = 30_000;
const AUDIT_ACTIONS = new Set(["opened", "updated", "acknowledged", "resolved", "feedback", "assigned", "reopened"]);

export interface Incident {
  id: number;
  site: string;
  kind: string;
  severity: "critical" | "warning" | string;
  status: "open" | "acknowledged" | "resolved" | string;
  title: string;
  first_seen_at: string;
  last_seen_at: string;
  peak_value: number;
  unit: string;
  assignee: string | null;
  acknowledged_by: string | null;
  resolved_by: string | null;
  feedback: boolean | null;
  feedback_comment: string | null;
  details?: Record<string, unknown>;
}

interface AuditItem {
  id: number;
  at: string;
  actor: string;
  action: string;
  details: Record<string, unknown>;
}

interface IncidentDetail extends Incident {
  audit: AuditItem[];
}

interface IncidentPage {
  items: Incident[];
  next_before_id: number | null;
}

interface HistBucket {
  deficit_hours: number;
  deficit_kwh: number;
  hours: number;
}
interface Histogram {
  hours: number;
  deficit_hours: number;
  deficit_kwh: number;
  by_hour: (HistBucket & { hour: number })[];
  by_day: (HistBucket & { date: string })[];
}

/** Several sites' histograms as one (sums per hour of day and per date). */
export function sumHistograms(hs: Histogram[]): Histogram {
  const byHour = Array.from({ length: 24 }, (_, hour) => ({ hour, deficit_hours: 0, deficit_kwh: 0, hours: 0 }));
  const byDay = new Map<string, HistBucket & { date: string }>();
  for (const h of hs) {
    for (const b of h.by_hour) {
      const slot = byHour[b.hour];
      slot.deficit_hours += b.deficit_hours;
      slot.deficit_kwh += b.deficit_kwh;
      slot.hours += b.hours;
    }
    for (const b of h.by_day) {
      const d = byDay.get(b.date) ?? { date: b.date, deficit_hours: 0, deficit_kwh: 0, hours: 0 };
      d.deficit_hours += b.deficit_hours;
      d.deficit_kwh += b.deficit_kwh;
      d.hours += b.hours;
      byDay.set(b.date, d);
    }
  }
  return {
    hours: hs.reduce((n, h) => n + h.hours, 0),
    deficit_hours: hs.reduce((n, h) => n + h.deficit_hours, 0),
    deficit_kwh: hs.reduce((n, h) => n + h.deficit_kwh, 0),
    by_hour: byHour,
    by_day: [...byDay.values()].sort((a, b) => a.date.localeCompare(b.date)),
  };
}

export function AlertsPage(): ReactNode {
  const { t } = useI18n();
  const [query, setQuery] = useQueryState();
  const sites = useSites();
  const site = query.get("site") ?? "ALL";
  const severity = query.get("severity") ?? "";
  const status = query.get("status") ?? "";
  const rangeKey = (query.get("range") ?? "30d") as RangeKey;
  const days = RANGES[rangeKey] ?? 30;
  const selected = query.get("incident");
  const known = sites.data ?? [];
  const codes = site === "ALL" ? known.map((s) => s.code) : [site];

  return (
    <section className="alerts">
      <div className="page-head">
        <h1>{t("alerts.title")}</h1>
        <div className="filters">
          <Select
            name="site"
            label={t("filter.site")}
            value={site}
            options={[{ value: "ALL", label: t("filter.allSites") }, ...known.map((s) => ({ value: s.code, label: s.name }))]}
            onChange={(v) => setQuery({ site: v === "ALL" ? null : v })}
          />
          <Select
            name="range"
            label={t("filter.range")}
            value={rangeKey}
            options={(Object.keys(RANGES) as RangeKey[]).map((k) => ({ value: k, label: t(`range.${k}` as Key) }))}
            onChange={(v) => setQuery({ range: v })}
          />
          <Select
            name="severity"
            label={t("filter.severity")}
            value={severity}
            options={[
              { value: "", label: t("filter.any") },
              { value: "critical", label: t("alerts.critical") },
              { value: "warning", label: t("alerts.warning") },
            ]}
            onChange={(v) => setQuery({ severity: v })}
          />
          <Select
            name="status"
            label={t("filter.status")}
            value={status}
            options={[
              { value: "", label: t("filter.any") },
              { value: "open", label: t("alerts.open") },
              { value: "acknowledged", label: t("alerts.acknowledged") },
              { value: "resolved", label: t("alerts.resolved") },
            ]}
            onChange={(v) => setQuery({ status: v })}
          />
        </div>
      </div>
      {sites.error && !sites.data ? (
        <ErrorBox error={sites.error} onRetry={sites.reload} />
      ) : !sites.data ? (
        <Loading />
      ) : (
        <>
          <HistogramCard codes={codes} days={days} />
          <div className={`incidents-layout ${selected ? "with-detail" : ""}`}>
            <IncidentList
              site={site === "ALL" ? null : site}
              severity={severity}
              status={status}
              days={days}
              selected={selected}
              onSelect={(id) => setQuery({ incident: id === null ? null : String(id) })}
            />
            {selected && <IncidentPanel id={selected} onClose={() => setQuery({ incident: null })} />}
          </div>
        </>
      )}
    </section>
  );
}

function HistogramCard({ codes, days }: { codes: string[]; days: number }): ReactNode {
  const { t, lang } = useI18n();
  const [by, setBy] = useState<"day" | "hour">("day");
  const state = useLoad<Histogram>(
    codes.length ? `hist|${codes.join(",")}|${days}` : null,
    async (signal) => {
      const range = lastDays(days);
      const hs = await Promise.all(
        codes.map((site) => api<Histogram>("/alerts/histogram", { query: { site, ...range }, signal })),
      );
      return sumHistograms(hs);
    },
    POLL_MS,
  );
  return (
    <div className="card" data-testid="histogram">
      <div className="card-head">
        <h2>{t("alerts.histogram")}</h2>
        <div className="segmented" role="group">
          {(["day", "hour"] as const).map((k) => (
            <button key={k} type="button" className={by === k ? "on" : ""} onClick={() => setBy(k)}>
              {t(k === "day" ? "alerts.byDay" : "alerts.byHour")}
            </button>
          ))}
        </div>
      </div>
      <Load state={state} what={t("alerts.histWhat")} isEmpty={(h) => h.hours === 0}>
        {(h) => (
          <>
            <p className="muted" data-testid="histogram-total" data-value={h.deficit_hours}>
              {t("alerts.histTotal", {
                h: formatNumber(h.deficit_hours, lang),
                kwh: formatEnergy(h.deficit_kwh, lang),
                n: formatNumber(h.hours, lang),
              })}
            </p>
            <HistogramChart histogram={h} by={by} />
          </>
        )}
      </Load>
    </div>
  );
}

function HistogramChart({ histogram, by }: { histogram: Histogram; by: "day" | "hour" }): ReactNode {
  const { t, lang } = useI18n();
  // Categories (local dates or hours of the day, as the service cut them), not instants.
  const [labels, data] = useMemo<[string[], uPlot.AlignedData]>(() => {
    const buckets = by === "hour" ? histogram.by_hour : histogram.by_day;
    const names =
      by === "hour"
        ? histogram.by_hour.map((b) => `${String(b.hour).padStart(2, "0")}h`)
        : histogram.by_day.map((b) => `${b.date.slice(8, 10)}/${b.date.slice(5, 7)}`);
    return [names, [buckets.map((_, i) => i), buckets.map((b) => b.deficit_hours)]];
  }, [histogram, by]);
  return (
    <Chart
      testId="histogram-chart"
      configKey={by}
      lang={lang}
      xLabels={labels}
      xTitle={t(by === "hour" ? "alerts.byHour" : "alerts.byDay")}
      fromZero
      data={data}
      height={220}
      series={[{ label: t("alerts.histogram"), stroke: COLORS.bar, fill: "rgba(234, 88, 12, 0.55)", paths: bars(), points: { show: false } }]}
    />
  );
}

function SeverityBadge({ severity }: { severity: string }): ReactNode {
  const { t } = useI18n();
  const key = severity === "critical" ? "alerts.critical" : "alerts.warning";
  return <span className={`badge sev-${severity}`}>{t(key)}</span>;
}

function StatusBadge({ status }: { status: string }): ReactNode {
  const { t } = useI18n();
  const key = (["open", "acknowledged", "resolved"].includes(status) ? `alerts.${status}` : "alerts.open") as Key;
  return <span className={`badge st-${status}`}>{t(key)}</span>;
}

function IncidentList(props: {
  site: string | null;
  severity: string;
  status: string;
  days: number;
  selected: string | null;
  onSelect: (id: number | null) => void;
}): ReactNode {
  const { t, lang } = useI18n();
  const filters = { site: props.site, severity: props.severity, status: props.status };
  const key = `inc|${JSON.stringify(filters)}|${props.days}`;
  const first = useLoad<IncidentPage>(
    key,
    (signal) => api<IncidentPage>("/incidents", { query: { ...filters, ...lastDays(props.days), limit: 50 }, signal }),
    POLL_MS,
  );
  const [more, setMore] = useState<{ key: string; items: Incident[]; next: number | null; error?: ApiError }>({
    key,
    items: [],
    next: null,
  });
  useEffect(() => setMore({ key, items: [], next: null }), [key]);
  const extra = more.key === key ? more : { items: [], next: null, error: undefined };

  const loadMore = async (): Promise<void> => {
    const before = extra.items.length ? extra.next : first.data?.next_before_id;
    if (!before) return;
    try {
      const page = await api<IncidentPage>("/incidents", {
        query: { ...filters, ...lastDays(props.days), limit: 50, before_id: before },
      });
      setMore({ key, items: [...extra.items, ...page.items], next: page.next_before_id });
    } catch (exc) {
      if (exc instanceof ApiError) setMore({ ...extra, key, error: exc });
    }
  };

  return (
    <div className="card incident-list" data-testid="incidents">
      <h2>{t("alerts.incidents")}</h2>
      <Load state={first} what={t("alerts.what")}>
        {(page) => {
          const items = [...page.items, ...extra.items];
          const hasMore = extra.items.length ? extra.next !== null : page.next_before_id !== null;
          if (items.length === 0) return <Empty>{t("alerts.none")}</Empty>;
          return (
            <>
              <ul className="rows">
                {items.map((inc) => (
                  <li key={inc.id}>
                    <button
                      type="button"
                      className={`incident sev-${inc.severity} st-${inc.status} ${String(inc.id) === props.selected ? "selected" : ""}`}
                      data-testid="incident-row"
                      data-id={inc.id}
                      data-severity={inc.severity}
                      data-status={inc.status}
                      onClick={() => props.onSelect(inc.id)}
                    >
                      <span className="incident-title">{inc.title}</span>
                      <span className="incident-meta">
                        <SeverityBadge severity={inc.severity} /> <StatusBadge status={inc.status} /> {inc.site} ·{" "}
                        {t("alerts.since", { time: formatDateTime(inc.first_seen_at, lang) })}
                      </span>
                    </button>
                  </li>
                ))}
              </ul>
              {extra.error && <ErrorBox error={extra.error} />}
              {hasMore && (
                <button type="button" className="ghost" onClick={() => void loadMore()} data-testid="incidents-more">
                  {t("alerts.more")}
                </button>
              )}
            </>
          );
        }}
      </Load>
    </div>
  );
}

function IncidentPanel({ id, onClose }: { id: string; onClose: () => void }): ReactNode {
  const { t, lang } = useI18n();
  const user = useUser();
  const state = useLoad<IncidentDetail>(`incident|${id}`, (signal) =>
    api<IncidentDetail>(`/incidents/${encodeURIComponent(id)}`, { signal }),
  );
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ ok: boolean; error?: ApiError } | null>(null);

  const act = async (action: "acknowledge" | "resolve" | "feedback", verdict?: boolean): Promise<void> => {
    setBusy(true);
    setOutcome(null);
    const text = comment.trim() || null;
    const body = action === "feedback" ? { true_positive: verdict, comment: text } : { comment: text };
    try {
      await api(`/incidents/${encodeURIComponent(id)}/${action}`, { method: "POST", body });
      setComment("");
      setOutcome({ ok: true });
      state.reload();
    } catch (exc) {
      setOutcome({ ok: false, error: exc instanceof ApiError ? exc : undefined });
    } finally {
      setBusy(false);
    }
  };

  return (
    <aside className="card incident-panel" data-testid="incident-detail">
      <div className="card-head">
        <h2>{t("incident.title", { id })}</h2>
        <button type="button" className="ghost" onClick={onClose}>
          {t("incident.close")}
        </button>
      </div>
      <Load state={state} what={t("alerts.what")}>
        {(inc) => (
          <>
            <p className={`incident-banner sev-${inc.severity}`}>
              <SeverityBadge severity={inc.severity} /> <StatusBadge status={inc.status} /> {inc.title}
            </p>
            {typeof inc.details?.why === "string" && <p className="why">{inc.details.why}</p>}
            <dl className="facts">
              <dt>{t("filter.site")}</dt>
              <dd>{inc.site}</dd>
              <dt>{t("incident.firstSeen")}</dt>
              <dd>{formatDateTime(inc.first_seen_at, lang)}</dd>
              <dt>{t("incident.lastSeen")}</dt>
              <dd>{formatDateTime(inc.last_seen_at, lang)}</dd>
              <dt>{t("incident.peak")}</dt>
              <dd>
                {formatNumber(inc.peak_value, lang, 1)} {inc.unit}
              </dd>
              {inc.feedback !== null && (
                <>
                  <dt>{t("incident.feedback")}</dt>
                  <dd>{t(inc.feedback ? "incident.truePositive" : "incident.falsePositive")}</dd>
                </>
              )}
            </dl>
            {hasRole(user, "operator") && (
              <div className="actions" data-testid="incident-actions">
                <label className="field wide">
                  <span>{t("incident.comment")}</span>
                  <textarea
                    name="comment"
                    rows={2}
                    maxLength={2000}
                    value={comment}
                    onChange={(e) => setComment(e.target.value)}
                  />
                </label>
                <div className="buttons">
                  {inc.status === "open" && (
                    <button type="button" className="primary" disabled={busy} data-testid="action-acknowledge" onClick={() => void act("acknowledge")}>
                      {t("incident.acknowledge")}
                    </button>
                  )}
                  {inc.status !== "resolved" && (
                    <button type="button" disabled={busy} data-testid="action-resolve" onClick={() => void act("resolve")}>
                      {t("incident.resolve")}
                    </button>
                  )}
                  <button type="button" disabled={busy} data-testid="action-true-positive" onClick={() => void act("feedback", true)}>
                    {t("incident.truePositive")}
                  </button>
                  <button type="button" disabled={busy} data-testid="action-false-positive" onClick={() => void act("feedback", false)}>
                    {t("incident.falsePositive")}
                  </button>
                </div>
                {outcome?.ok && <p className="ok">{t("incident.done")}</p>}
                {outcome && !outcome.ok && outcome.error && <ErrorBox error={outcome.error} />}
              </div>
            )}
            <h3>{t("incident.audit")}</h3>
            {inc.audit.length === 0 ? (
              <Empty>{t("incident.noAudit")}</Empty>
            ) : (
              <ol className="audit" data-testid="audit-trail">
                {inc.audit.map((a) => (
                  <li key={a.id} data-action={a.action}>
                    <time>{formatDateTime(a.at, lang)}</time> <strong>{a.actor}</strong>{" "}
                    {AUDIT_ACTIONS.has(a.action) ? t(`audit.${a.action}` as Key) : a.action}
                    {typeof a.details?.comment === "string" && a.details.comment && <q>{a.details.comment}</q>}
                  </li>
                ))}
              </ol>
            )}
          </>
        )}
      </Load>
    </aside>
  );
}
