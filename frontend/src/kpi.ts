// Cockpit figures computed from the gateway's answers (pure functions, unit-tested).

export interface Site {
  code: string;
  name: string;
  timezone: string;
  capacity_kw?: number | null;
  country_code?: string | null;
}

export interface Balance {
  site: string;
  consumed_kwh: number;
  produced_kwh: number;
  coverage_rate: number | null;
  deficit_kwh: number;
  deficit_hours: number;
  n_readings: number;
  last_ts: string | null;
}

export interface ReadingBucket {
  ts: string;
  consumption_kwh: number;
  production_kwh: number;
}

export interface Readings {
  site: string;
  timezone: string;
  resolution: string;
  items: ReadingBucket[];
}

export interface Kpis {
  consumedKwh: number;
  producedKwh: number;
  /** produced / consumed; null when nothing was consumed */
  coverageRate: number | null;
  deficitKwh: number;
  deficitHours: number;
  readings: number;
}

/** Several sites' balances as one: sums, and the coverage of the sums (not a mean of rates). */
export function combineBalances(balances: Balance[]): Kpis {
  let consumed = 0;
  let produced = 0;
  let deficit = 0;
  let hours = 0;
  let readings = 0;
  for (const b of balances) {
    consumed += b.consumed_kwh;
    produced += b.produced_kwh;
    deficit += b.deficit_kwh;
    hours += b.deficit_hours;
    readings += b.n_readings;
  }
  if (balances.length === 1) {
    // One site: the service's own rate, so what is shown is exactly what the API says.
    const b = balances[0];
    return {
      consumedKwh: b.consumed_kwh,
      producedKwh: b.produced_kwh,
      coverageRate: b.coverage_rate,
      deficitKwh: b.deficit_kwh,
      deficitHours: b.deficit_hours,
      readings: b.n_readings,
    };
  }
  return {
    consumedKwh: consumed,
    producedKwh: produced,
    coverageRate: consumed > 0 ? produced / consumed : null,
    deficitKwh: deficit,
    deficitHours: hours,
    readings,
  };
}

/** Columns for the chart: epoch seconds, consumption, production, max(consumption, production). */
export interface HourlySeries {
  ts: number[];
  consumption: number[];
  production: number[];
  /** upper edge of the deficit band: equals production where there is no deficit */
  deficitTop: number[];
}

/** Sites' hourly buckets summed per instant, sorted by time. */
export function mergeHourly(series: Readings[]): HourlySeries {
  if (series.length === 1) return columns(series[0].items);
  const byTs = new Map<number, [number, number]>();
  for (const s of series) {
    for (const b of s.items) {
      const t = Date.parse(b.ts) / 1000;
      const cur = byTs.get(t);
      if (cur) {
        cur[0] += b.consumption_kwh;
        cur[1] += b.production_kwh;
      } else {
        byTs.set(t, [b.consumption_kwh, b.production_kwh]);
      }
    }
  }
  const ts = [...byTs.keys()].sort((a, b) => a - b);
  const consumption = ts.map((t) => (byTs.get(t) as [number, number])[0]);
  const production = ts.map((t) => (byTs.get(t) as [number, number])[1]);
  return { ts, consumption, production, deficitTop: consumption.map((c, i) => Math.max(c, production[i])) };
}

function columns(items: ReadingBucket[]): HourlySeries {
  const n = items.length;
  const ts = new Array<number>(n);
  const consumption = new Array<number>(n);
  const production = new Array<number>(n);
  const deficitTop = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const b = items[i];
    ts[i] = Date.parse(b.ts) / 1000;
    consumption[i] = b.consumption_kwh;
    production[i] = b.production_kwh;
    deficitTop[i] = Math.max(b.consumption_kwh, b.production_kwh);
  }
  return { ts, consumption, production, deficitTop };
}

/** The deficit of the latest hour shown: max(consumption - production, 0), with its time. */
export function currentDeficit(series: HourlySeries): { kwh: number; ts: number } | null {
  const n = series.ts.length;
  if (n === 0) return null;
  return { kwh: Math.max(series.consumption[n - 1] - series.production[n - 1], 0), ts: series.ts[n - 1] };
}
