import { useCallback, useEffect, useRef, useState } from "react";
import { api, ApiError } from "./api";
import type { Site } from "./kpi";

export interface Loadable<T> {
  data: T | undefined;
  error: ApiError | undefined;
  /** first load of this key: nothing to show yet */
  loading: boolean;
  /** a background refresh is running; the previous data stays on screen */
  refreshing: boolean;
  updatedAt: Date | undefined;
  reload: () => void;
}

function asApiError(exc: unknown): ApiError {
  if (exc instanceof ApiError) return exc;
  return new ApiError(0, "ClientError", String(exc), "other");
}

/**
 * Load data for ``key`` (null: nothing to load). A new key starts from scratch; polling and
 * reload keep the data on screen while they fetch, so a live page never flickers.
 */
export function useLoad<T>(
  key: string | null,
  load: (signal: AbortSignal) => Promise<T>,
  pollMs = 0,
): Loadable<T> {
  const [state, setState] = useState<{ key: string | null; data?: T; error?: ApiError; at?: Date }>({ key: null });
  const [busy, setBusy] = useState(false);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    if (key === null) return;
    const ctrl = new AbortController();
    setBusy(true);
    loadRef
      .current(ctrl.signal)
      .then((data) => {
        if (!ctrl.signal.aborted) setState({ key, data, at: new Date() });
      })
      .catch((exc: unknown) => {
        if (ctrl.signal.aborted || (exc instanceof DOMException && exc.name === "AbortError")) return;
        // Keep the last good data of this key beside the error (a failed poll is not a blank page).
        setState((prev) => (prev.key === key ? { ...prev, error: asApiError(exc) } : { key, error: asApiError(exc) }));
      })
      .finally(() => {
        if (!ctrl.signal.aborted) setBusy(false);
      });
    return () => ctrl.abort();
  }, [key, tick]);

  useEffect(() => {
    if (key === null || pollMs <= 0) return;
    const id = window.setInterval(() => {
      if (document.visibilityState !== "hidden") setTick((t) => t + 1);
    }, pollMs);
    return () => window.clearInterval(id);
  }, [key, pollMs]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  const current = state.key === key;
  return {
    data: current ? state.data : undefined,
    error: current ? state.error : undefined,
    loading: key !== null && !current,
    refreshing: busy && current,
    updatedAt: current ? state.at : undefined,
    reload,
  };
}

let sitesPromise: Promise<Site[]> | null = null;

/** The sites list, fetched once per page load (it changes rarely; admin edits reset it). */
export function useSites(): Loadable<Site[]> {
  return useLoad("sites", () => {
    sitesPromise ??= api<Site[]>("/sites").catch((exc: unknown) => {
      sitesPromise = null;
      throw exc;
    });
    return sitesPromise;
  });
}

/** Forget the cached sites list (after an admin change). */
export function resetSites(): void {
  sitesPromise = null;
}
