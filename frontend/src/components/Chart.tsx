import { useEffect, useRef, type ReactNode } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Lang } from "../format";
import { numberTicks, timeTicks, timeValue } from "./axes";

export interface ChartProps {
  /** columns: x (epoch seconds, or plain numbers) then one array per series */
  data: uPlot.AlignedData;
  series: uPlot.Series[];
  bands?: uPlot.Band[];
  /** when this changes the chart is rebuilt; otherwise new data is drawn in place */
  configKey: string;
  lang: Lang;
  timeZone?: string;
  /** x is time (default), or categories labelled by ``xLabels`` (histograms) */
  xLabels?: string[];
  xTitle?: string;
  height?: number;
  /** start the value axis at zero (energy, counts) */
  fromZero?: boolean;
  /** a performance mark set once, at the first draw with data (bench/ui.py reads it) */
  mark?: string;
  testId?: string;
}

const AXIS = { stroke: "#475569", grid: { stroke: "#e2e8f0", width: 1 }, ticks: { stroke: "#cbd5e1", width: 1 } };

/** uPlot in React: built once per configKey, then only setData, so live updates don't flicker. */
export function Chart(props: ChartProps): ReactNode {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef(props);
  latest.current = props;
  const marked = useRef(false);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const p = latest.current;
    const categories = p.xLabels !== undefined;
    const ticks = timeTicks(p.lang, p.timeZone);
    const value = timeValue(p.lang, p.timeZone);
    const xAxis: uPlot.Axis = categories
      ? { ...AXIS, size: 34, values: (_u, splits) => splits.map((i) => latest.current.xLabels?.[i] ?? "") }
      : { ...AXIS, size: 44, values: (_u, splits, _ax, _space, incr) => ticks(splits, incr) };
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 260),
      height: p.height ?? 300,
      series: [
        {
          label: p.xTitle ?? "Date",
          value: categories
            ? (_u, v) => (v === null ? "—" : (latest.current.xLabels?.[v] ?? ""))
            : (_u, v) => value(v),
        },
        ...p.series,
      ],
      bands: p.bands,
      scales: {
        x: categories
          ? { time: false, range: (_u, min, max) => [min - 0.5, max + 0.5] }
          : { time: true },
        y: p.fromZero
          ? { range: (_u, min, max) => [Math.min(0, min), uPlot.rangeNum(0, max > 0 ? max : 1, 0.1, true)[1]] }
          : {},
      },
      axes: [xAxis, { ...AXIS, size: 60, values: (_u, splits) => numberTicks(latest.current.lang)(splits) }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      hooks: {
        draw: [
          (u: uPlot) => {
            const name = latest.current.mark;
            if (name && !marked.current && u.data[0].length > 0) {
              marked.current = true;
              performance.mark(name);
            }
          },
        ],
      },
    };
    const u = new uPlot(opts, p.data, el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const width = Math.max(el.clientWidth, 260);
      if (Math.abs(width - u.width) > 1) u.setSize({ width, height: u.height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [props.configKey, props.lang, props.timeZone]);

  useEffect(() => {
    const u = plot.current;
    if (u && u.data !== props.data) u.setData(props.data);
  }, [props.data]);

  return <div className="chart" ref={box} data-testid={props.testId} data-points={props.data[0].length} />;
}

export const COLORS = {
  consumption: "#b91c1c",
  production: "#15803d",
  deficit: "rgba(220, 38, 38, 0.28)",
  forecast: "#7c3aed",
  band: "rgba(124, 58, 237, 0.16)",
  baseline: "#64748b",
  actual: "#0f172a",
  bar: "#ea580c",
};

/** Bar paths: one series per x (``align`` 0), or two side by side (-1 left, 1 right). */
export function bars(align: -1 | 0 | 1 = 0): uPlot.Series.PathBuilder | undefined {
  return uPlot.paths.bars?.({ size: [align === 0 ? 0.7 : 0.4, 40], align });
}
