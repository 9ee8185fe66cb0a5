import type { ReactNode } from "react";
import type { ApiError } from "../api";
import { formatTime } from "../format";
import { useI18n, type Key } from "../i18n";
import type { Loadable } from "../hooks";

const SERVICES = new Set(["ingest", "forecast", "alerts", "gateway"]);

/** The service a 503 names ("the alerts service is not answering..."). */
export function serviceOf(error: ApiError): string | null {
  const match = /the (\w+) service/i.exec(error.detail);
  return match && SERVICES.has(match[1].toLowerCase()) ? match[1].toLowerCase() : null;
}

/** A sentence for an error, in the operator's terms. */
export function useErrorText(): (error: ApiError, what?: string) => string {
  const { t } = useI18n();
  return (error, what) => {
    switch (error.kind) {
      case "network":
        return t("state.network");
      case "unavailable": {
        const service = serviceOf(error);
        return t("state.unavailable", {
          service: t(service ? (`service.${service}` as Key) : "service.unknown"),
        });
      }
      case "missing":
        return t("state.missing", { what: what ?? error.detail });
      case "forbidden":
        return t("state.forbidden");
      default:
        return t("state.error", { detail: error.detail });
    }
  };
}

export function Loading({ label }: { label?: string }): ReactNode {
  const { t } = useI18n();
  return (
    <div className="state state-loading" role="status" data-testid="state-loading">
      <span className="spinner" aria-hidden="true" /> {label ?? t("state.loading")}
    </div>
  );
}

export function Empty({ children }: { children?: ReactNode }): ReactNode {
  const { t } = useI18n();
  return (
    <div className="state state-empty" data-testid="state-empty">
      {children ?? t("state.empty")}
    </div>
  );
}

export function ErrorBox({ error, what, onRetry }: { error: ApiError; what?: string; onRetry?: () => void }): ReactNode {
  const { t } = useI18n();
  const text = useErrorText();
  const service = error.kind === "unavailable" ? serviceOf(error) : null;
  return (
    <div
      className={`state state-error state-${error.kind}`}
      role="alert"
      data-testid="state-error"
      data-kind={error.kind}
      data-service={service ?? undefined}
    >
      <span>{text(error, what)}</span>
      {onRetry && error.kind !== "missing" && error.kind !== "forbidden" && (
        <button type="button" className="link" onClick={onRetry}>
          {t("state.retry")}
        </button>
      )}
    </div>
  );
}

/**
 * Render ``children(data)`` once loaded; a spinner before, the error when there is nothing
 * to show, and, when a refresh failed over good data, the data with a quiet notice.
 */
export function Load<T>({
  state,
  what,
  isEmpty,
  children,
}: {
  state: Loadable<T>;
  what?: string;
  isEmpty?: (data: T) => boolean;
  children: (data: T) => ReactNode;
}): ReactNode {
  const { t, lang } = useI18n();
  if (state.data === undefined) {
    if (state.error) return <ErrorBox error={state.error} what={what} onRetry={state.reload} />;
    return <Loading />;
  }
  if (isEmpty?.(state.data)) return <Empty />;
  return (
    <>
      {state.error && state.updatedAt && (
        <div className="state state-stale" role="status" data-testid="state-stale">
          {t("state.stale", { time: formatTime(state.updatedAt, lang) })}
        </div>
      )}
      {children(state.data)}
    </>
  );
}
