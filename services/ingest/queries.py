"""SQL of the ingest read path, built once at import.

A read is two statements on a connection of the read pool (autocommit): the entity lookup,
which also sets the connection's ``TimeZone`` to the site's zone (``set_config(..., false)``:
for the session, as each autocommit statement is its own transaction; every read sets it
before relying on it), then one data statement that range-scans the primary key
``(entity_id, ts, source)``. With the zone set, PostgreSQL itself renders every timestamp with
the site's UTC offset.

Buckets are computed in the site's zone: ``date_trunc(field, ts)`` truncates a timestamptz
in the connection's TimeZone, which the lookup has just set to the site's (the same result as
the 3-argument form, measured ~2 ms cheaper per 8,760 rows). So a local day is 23 or 25 hours
long on DST changes, weeks start on Monday and months are calendar months. Plain PostgreSQL
throughout, so it runs unchanged on a TimescaleDB hypertable.

The readings statement returns its JSON array already built (``json_agg`` of one object
per bucket): for a year of hourly buckets that is several times cheaper than shipping 8,760
rows to Python and serialising them there.
"""

from __future__ import annotations

from sqlalchemy import TextClause, text

SITE: TextClause = text("""
    SELECT id, timezone, set_config('TimeZone', timezone, false) AS _
    FROM ingest.site WHERE code = :code
""")

EQUIPMENT: TextClause = text("""
    SELECT q.id, s.timezone, set_config('TimeZone', s.timezone, false) AS _
    FROM ingest.equipment q JOIN ingest.site s ON s.id = q.site_id
    WHERE q.code = :code
""")

# When several sources measured the same interval, one wins: a meter beats a file import,
# which beats the simulator; summing them would double-count the interval.
_SOURCE_RANK = "CASE x.source WHEN 'real' THEN 0 WHEN 'import' THEN 1 ELSE 2 END"


def _picked(
    table: str,
    columns: str,
    key: str,
    *,
    one_source: bool,
    lo: str = ":start",
    hi: str = ":end",
) -> str:
    """Rows of one entity with lo <= ts < hi: of :source, or else one per ts by source rank."""
    where = f"x.{key} = :entity_id AND x.ts >= {lo} AND x.ts < {hi}"
    if one_source:
        # (entity, ts, source) is the primary key: one row per ts already, no ranking needed.
        return f"SELECT x.ts, {columns} FROM ingest.{table} x WHERE {where} AND x.source = :source"
    return f"""
        SELECT DISTINCT ON (x.ts) x.ts, {columns}
        FROM ingest.{table} x
        WHERE {where}
        ORDER BY x.ts, {_SOURCE_RANK}
    """


def _kwh(expr: str) -> str:
    """A numeric kWh sum rounded to the mWh, as float8; NULL when not a plausible number.

    Energy sums are numeric (exact: the same total whatever the order or grouping of the
    readings, which is what lets roll-ups stand in for raw readings); the guard keeps absurd
    values out of the output.
    """
    return f"CASE WHEN abs({expr}) < 1e15 THEN round(CAST({expr} AS numeric), 6)::float8 END"


def _kwh_json(expr: str) -> str:
    """Like ``_kwh`` for a value rendered by json_agg: numeric without trailing zeros.

    Prints the same digits as the float8 would, without numeric -> float8 (which PostgreSQL
    does through text: a year of hourly buckets spent ~7 ms on it).
    """
    return f"CASE WHEN abs({expr}) < 1e15 THEN trim_scale(round({expr}, 6)) END"


def _kwh_float(expr: str) -> str:
    """A float8 kWh value (one raw reading) rounded to the mWh; NULL when not finite/plausible.

    Rounding hides float noise; the guard keeps NaN / Infinity (not JSON) out of the output.
    """
    return f"CASE WHEN abs({expr}) < 1e15 THEN round(({expr}) * 1e6) / 1e6 END"


def _num(column: str) -> str:
    return f"CAST({column} AS numeric)"


_READING_COLUMNS = "x.consumption_kwh, x.production_kwh"

# Roll-ups (services/ingest/rollup.py): ingest.reading_hourly holds, per site, source ('*' for
# the source-precedence pick) and site-zone hour, the exact sums of the raw readings. An hour
# bucket K is read from it when it is complete inside the range and below the cut, the
# watermark lowered to one hour before the earliest pending invalidation of the site (a late
# write not yet folded in); every other reading of the range is read raw. A bucket holds
# readings K <= ts < K + 1 h, so raw readings are needed only in [start, start + 1 h) (a
# partial first hour) and from min(cut, end - 1 h) on: two short index range scans.
# One statement, so the roll-ups, the watermark, the invalidations and the raw readings are
# read in one snapshot.
_BOUNDS = """
    bounds AS (
        SELECT c.cut,
               CAST(:end AS timestamptz) - interval '1 hour' AS last_hour,
               least(CAST(:start AS timestamptz) + interval '1 hour',
                     CAST(:end AS timestamptz)) AS head_end,
               greatest(CAST(:start AS timestamptz) + interval '1 hour',
                        least(c.cut, CAST(:end AS timestamptz) - interval '1 hour')) AS tail_start
        FROM (
            SELECT least(w.watermark,
                         coalesce((SELECT min(i.lo) FROM ingest.rollup_invalidation i
                                   WHERE i.site_id = :entity_id), 'infinity')
                         - interval '1 hour') AS cut
            FROM ingest.rollup_state w
        ) c
    )
"""

_ROLLED = """
    SELECT h.hour, h.consumption_kwh AS c, h.production_kwh AS p, h.n_readings AS n,
           h.first_ts, h.last_ts{json}
    FROM ingest.reading_hourly h
    WHERE h.site_id = :entity_id AND h.source = :rollup_source
      AND h.hour >= :start
      AND h.hour < (SELECT cut FROM bounds) AND h.hour <= (SELECT last_hour FROM bounds)
"""


def _raw_edges(*, one_source: bool) -> str:
    """Raw readings of the range whose hour bucket is not read from the roll-ups."""
    head = _picked(
        "reading",
        _READING_COLUMNS,
        "site_id",
        one_source=one_source,
        hi="(SELECT head_end FROM bounds)",
    )
    tail = _picked(
        "reading",
        _READING_COLUMNS,
        "site_id",
        one_source=one_source,
        lo="(SELECT tail_start FROM bounds)",
    )
    return f"""
        SELECT e.* FROM (({head}) UNION ALL ({tail})) e, bounds
        WHERE NOT (date_trunc('hour', e.ts) >= :start AND date_trunc('hour', e.ts) < bounds.cut
                   AND date_trunc('hour', e.ts) <= bounds.last_hour)
    """


def bucket_row(g: str, *, exact: bool = True) -> str:
    """The columns of one bucket of ``g`` (ts, c, p, n), named as the API names them."""
    kwh = _kwh_json if exact else _kwh_float
    return f"""
        {g}.ts, {kwh(f"{g}.c")} AS consumption_kwh, {kwh(f"{g}.p")} AS production_kwh,
        {kwh(f"{g}.p - {g}.c")} AS balance_kwh, {g}.n AS n_readings
    """


def _buckets_json(rows: str, *, exact: bool) -> str:
    # json_agg names each object's keys after the columns of b, and renders ts with the
    # connection's TimeZone (the site's) offset.
    return f"""
        SELECT count(*) AS n_items, coalesce(json_agg(b ORDER BY b.ts), '[]')::text AS items_json
        FROM (SELECT {bucket_row("g", exact=exact)} FROM ({rows}) g) b
    """


def _readings(kind: str, *, one_source: bool) -> TextClause:
    if kind == "raw":
        picked = _picked("reading", _READING_COLUMNS, "site_id", one_source=one_source)
        # LIMIT :cap + 1 tells "over the cap" apart from "exactly the cap".
        rows = f"""
            SELECT r.ts, r.consumption_kwh AS c, r.production_kwh AS p, 1 AS n
            FROM ({picked}) r ORDER BY r.ts LIMIT :cap + 1
        """
        return text(_buckets_json(rows, exact=False))
    if kind == "hour":
        # The roll-up rows as they are (a roll-up hour and a raw-read hour are never the same
        # bucket), with the JSON object stored with each (built by the same bucket_row, in the
        # site's zone: rendering 8,760 objects was most of a year's read), plus the raw edges
        # summed per hour. A roll-up hour is not re-truncated: that could move it on the rare
        # zones whose clocks jump by 30 minutes.
        edges = f"""
            SELECT date_trunc('hour', e.ts) AS ts, sum({_num("e.consumption_kwh")}) AS c,
                   sum({_num("e.production_kwh")}) AS p, count(*) AS n
            FROM ({_raw_edges(one_source=one_source)}) e
            GROUP BY 1
        """
        return text(f"""
            WITH {_BOUNDS}
            SELECT count(*) AS n_items,
                   coalesce('[' || string_agg(u.j, ', ' ORDER BY u.ts) || ']', '[]') AS items_json
            FROM (
                SELECT r.hour AS ts, r.bucket_json AS j
                FROM ({_ROLLED.format(json=", h.bucket_json")}) r
                UNION ALL
                SELECT b.ts, CAST(row_to_json(b) AS text)
                FROM (SELECT {bucket_row("g")} FROM ({edges}) g) b
            ) u
        """)
    # Roll-up hours and raw edges summed per local day / week / month (:field); the readings
    # of a bucket share its hour's day.
    rows = f"""
        SELECT u.ts, sum(u.c) AS c, sum(u.p) AS p, sum(u.n) AS n
        FROM (
            SELECT date_trunc(CAST(:field AS text), r.hour) AS ts, r.c, r.p, r.n
            FROM ({_ROLLED.format(json="")}) r
            UNION ALL
            SELECT date_trunc(CAST(:field AS text), e.ts),
                   {_num("e.consumption_kwh")}, {_num("e.production_kwh")}, 1
            FROM ({_raw_edges(one_source=one_source)}) e
        ) u
        GROUP BY 1
    """
    return text(f"WITH {_BOUNDS} {_buckets_json(rows, exact=True)}")


# ("raw" | "hour" | "period", one source?) -> statement returning (n_items, items_json): a JSON
# array of buckets. "period" takes :field (day, week, month); aggregated reads take
# :rollup_source (the source, or '*' without one) besides :source.
READINGS: dict[tuple[str, bool], TextClause] = {
    (kind, one): _readings(kind, one_source=one)
    for kind in ("raw", "hour", "period")
    for one in (False, True)
}


def _balance(*, one_source: bool) -> TextClause:
    # Deficit figures are over local hours (site zone: it matters for half-hour zones), so
    # two half-hours of an hour net out before the deficit is taken.
    return text(f"""
        WITH {_BOUNDS}
        SELECT {_kwh("a.c")} AS consumed_kwh,
               {_kwh("a.p")} AS produced_kwh,
               {_kwh("a.deficit")} AS deficit_kwh,
               a.deficit_hours, a.peak_hour,
               {_kwh("a.peak")} AS peak_deficit_kwh,
               a.n_readings, a.first_ts, a.last_ts
        FROM (
            SELECT sum(h.c) AS c, sum(h.p) AS p,
                   sum(greatest(h.c - h.p, 0)) AS deficit,
                   count(*) FILTER (WHERE h.c > h.p) AS deficit_hours,
                   (array_agg(h.hour ORDER BY h.c - h.p DESC, h.hour)
                       FILTER (WHERE h.c > h.p))[1] AS peak_hour,
                   max(h.c - h.p) FILTER (WHERE h.c > h.p) AS peak,
                   coalesce(sum(h.n), 0)::bigint AS n_readings,
                   min(h.first_ts) AS first_ts, max(h.last_ts) AS last_ts
            FROM (
                SELECT r.hour, r.c, r.p, r.n, r.first_ts, r.last_ts
                FROM ({_ROLLED.format(json="")}) r
                UNION ALL
                SELECT date_trunc('hour', e.ts) AS hour,
                       sum({_num("e.consumption_kwh")}), sum({_num("e.production_kwh")}),
                       count(*), min(e.ts), max(e.ts)
                FROM ({_raw_edges(one_source=one_source)}) e
                GROUP BY 1
            ) h
        ) a
    """)


BALANCE: dict[bool, TextClause] = {one: _balance(one_source=one) for one in (False, True)}

SENSORS: tuple[str, ...] = ("flow_m3h", "pressure_bar", "vibration_mm_s", "temperature_c")
_TELEMETRY_COLUMNS = "x.source, " + ", ".join(f"x.{s}" for s in SENSORS)
# Averages are exact sums over counts (numeric), so hours rolled up by retention
# (ingest.telemetry_hourly: per sensor n, sum, max) average to the same value as raw samples.
_SENSOR_AGGREGATES = ", ".join(
    f"CAST(sum(u.{s}_sum) / nullif(sum(u.{s}_n), 0) AS float8) AS {s}_avg, "
    f"max(u.{s}_max) AS {s}_max"
    for s in SENSORS
)
_ROLLED_SENSORS = ", ".join(f"h.{s}_n, h.{s}_sum, h.{s}_max" for s in SENSORS)
_RAW_SENSORS = ", ".join(
    f"CAST(r.{s} IS NOT NULL AS integer), CAST(r.{s} AS numeric), r.{s}" for s in SENSORS
)


def _telemetry(*, raw: bool, one_source: bool) -> TextClause:
    picked = _picked("telemetry", _TELEMETRY_COLUMNS, "equipment_id", one_source=one_source)
    if raw:
        return text(f"SELECT * FROM ({picked}) r ORDER BY r.ts LIMIT :cap + 1")
    # Hours whose raw samples retention dropped come from their roll-ups (whole hours of the
    # range only); raw samples exist only from the raw horizon on.
    return text(f"""
        SELECT u.ts, sum(u.n)::bigint AS n_samples, {_SENSOR_AGGREGATES}
        FROM (
            SELECT CASE WHEN CAST(:field AS text) = 'hour' THEN h.hour
                        ELSE date_trunc(CAST(:field AS text), h.hour) END AS ts,
                   h.n_samples AS n, {_ROLLED_SENSORS}
            FROM ingest.telemetry_hourly h
            WHERE h.equipment_id = :entity_id AND h.source = :rollup_source
              AND h.hour >= :start
              AND h.hour < (SELECT raw_horizon FROM ingest.rollup_state)
              AND h.hour <= CAST(:end AS timestamptz) - interval '1 hour'
            UNION ALL
            SELECT date_trunc(CAST(:field AS text), r.ts), 1, {_RAW_SENSORS}
            FROM ({picked}) r
        ) u
        GROUP BY 1 ORDER BY 1
    """)


TELEMETRY: dict[tuple[bool, bool], TextClause] = {
    (raw, one): _telemetry(raw=raw, one_source=one)
    for raw in (False, True)
    for one in (False, True)
}

_WEATHER_COLUMNS = "x.source, x.temperature_c, x.irradiance_w_m2, x.wind_speed_m_s, x.is_forecast"
WEATHER: dict[bool, TextClause] = {
    one: text(f"""
        SELECT * FROM ({_picked("weather", _WEATHER_COLUMNS, "site_id", one_source=one)}) r
        ORDER BY r.ts LIMIT :cap + 1
    """)
    for one in (False, True)
}

# Events of one piece of equipment in [start, end), by time: the unique key
# (equipment_id, ts, kind) serves the range scan.
EQUIPMENT_EVENTS: TextClause = text("""
    SELECT ts, kind, description, source
    FROM ingest.equipment_event
    WHERE equipment_id = :entity_id AND ts >= :start AND ts < :end
    ORDER BY ts, kind
    LIMIT :cap + 1
""")

# Newest first by id (ids only grow), keyset-paginated: no OFFSET scan on deep pages.
QUARANTINE: TextClause = text("""
    SELECT id, batch_id, kind, row_number, payload, reason, received_at
    FROM ingest.quarantine
    WHERE (CAST(:kind AS text) IS NULL OR kind = CAST(:kind AS text))
      AND (CAST(:before_id AS bigint) IS NULL OR id < CAST(:before_id AS bigint))
    ORDER BY id DESC
    LIMIT :limit + 1
""")

# Labels overlapping [start, end); each bound optional, as is the site.
ANOMALY_LABELS: TextClause = text("""
    SELECT s.code AS site, s.timezone, a.kind, a.start_ts, a.end_ts, a.magnitude, a.source
    FROM ingest.anomaly_label a JOIN ingest.site s ON s.id = a.site_id
    WHERE (CAST(:site_id AS integer) IS NULL OR a.site_id = CAST(:site_id AS integer))
      AND (CAST(:end AS timestamptz) IS NULL OR a.start_ts < CAST(:end AS timestamptz))
      AND (CAST(:start AS timestamptz) IS NULL OR a.end_ts > CAST(:start AS timestamptz))
    ORDER BY a.start_ts, s.code, a.kind
    LIMIT :limit
""")
