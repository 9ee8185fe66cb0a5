// HTTP client of the gateway's public API: bearer token, one silent refresh on 401, and
// errors classified so every page can say *why* something is not shown.

export type Role = "viewer" | "operator" | "admin";
export interface User {
  username: string;
  role: Role;
}

/** What went wrong, in the terms a page needs to choose its message. */
export type ErrorKind =
  | "network" // the gateway itself did not answer
  | "unavailable" // 503: the service behind the route is down
  | "missing" // the route does not exist (yet) on this gateway
  | "auth" // session over
  | "forbidden"
  | "input" // 4xx caused by what was asked
  | "other";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly detail: string,
    readonly kind: ErrorKind,
    readonly retryAfterS: number | null = null,
  ) {
    super(`${status} ${error}: ${detail}`);
  }
}

/** Classify an HTTP error answer (status + the one SP-E error body). */
export function classify(status: number, _error: string, detail: string): ErrorKind {
  if (status === 0) return "network";
  if (status === 503 || status === 502 || status === 504) return "unavailable";
  // FastAPI's own "no such route" answers, as opposed to a named NotFound (SiteNotFound...).
  if ((status === 404 && detail === "Not Found") || status === 405) return "missing";
  if (status === 401) return "auth";
  if (status === 403) return "forbidden";
  if (status >= 400 && status < 500) return "input";
  return "other";
}

const ROLE_RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

/** True when ``role`` is at least ``minimum``. */
export function hasRole(user: User | null, minimum: Role): boolean {
  return user !== null && ROLE_RANK[user.role] >= ROLE_RANK[minimum];
}

interface TokenPair {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  username: string;
  role: Role;
}

// The access token lives in memory only; the refresh token in sessionStorage (this tab only)
// so a reload does not log the operator out; the gateway rotates it on each use.
const REFRESH_KEY = "spe.refresh";

type Listener = (user: User | null, reason: "login" | "logout" | "expired") => void;

class Session {
  access: string | null = null;
  user: User | null = null;
  private refreshing: Promise<boolean> | null = null;
  private listeners = new Set<Listener>();

  get refreshToken(): string | null {
    try {
      return sessionStorage.getItem(REFRESH_KEY);
    } catch {
      return null;
    }
  }

  private set refreshToken(value: string | null) {
    try {
      if (value) sessionStorage.setItem(REFRESH_KEY, value);
      else sessionStorage.removeItem(REFRESH_KEY);
    } catch {
      // storage disabled: the session simply does not survive a reload
    }
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(reason: "login" | "logout" | "expired"): void {
    for (const l of this.listeners) l(this.user, reason);
  }

  accept(pair: TokenPair, reason: "login" | null): void {
    this.access = pair.access_token;
    this.refreshToken = pair.refresh_token;
    this.user = { username: pair.username, role: pair.role };
    if (reason) this.emit(reason);
  }

  clear(reason: "logout" | "expired"): void {
    const had = this.user !== null || this.access !== null;
    this.access = null;
    this.user = null;
    this.refreshToken = null;
    if (had || reason === "expired") this.emit(reason);
  }

  /** Exchange the refresh token for a new pair; concurrent callers share one request. */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    const token = this.refreshToken;
    if (!token) return false;
    let response: Response;
    try {
      response = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: token }),
      });
    } catch {
      return false;
    }
    if (!response.ok) return false;
    this.accept((await response.json()) as TokenPair, null);
    return true;
  }
}

export const session = new Session();

export type Query = Record<string, string | number | boolean | null | undefined>;

/** ``path`` with the non-empty query parameters appended (``+`` in offsets encoded). */
export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== null && v !== undefined && v !== "") params.set(k, String(v));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function errorFrom(response: Response): Promise<ApiError> {
  let error = `HTTP${response.status}`;
  let detail = response.statusText;
  try {
    const body = (await response.json()) as { error?: string; detail?: unknown };
    if (body.error) error = body.error;
    if (body.detail !== undefined) detail = String(body.detail);
  } catch {
    // not the JSON error shape (a proxy in front?): keep the status text
  }
  const retry = Number(response.headers.get("Retry-After"));
  return new ApiError(
    response.status,
    error,
    detail,
    classify(response.status, error, detail),
    Number.isFinite(retry) && retry > 0 ? retry : null,
  );
}

interface RequestOptions {
  method?: string;
  query?: Query;
  body?: unknown;
  signal?: AbortSignal;
}

/** One authenticated request; a 401 triggers one refresh and one retry, then expiry. */
export async function request(path: string, opts: RequestOptions = {}): Promise<Response> {
  const url = withQuery(`/api/v1${path}`, opts.query);
  const send = (): Promise<Response> => {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (session.access) headers.Authorization = `Bearer ${session.access}`;
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method: opts.method ?? "GET",
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
  };
  let response: Response;
  try {
    response = await send();
    if (response.status === 401 && (await session.refresh())) response = await send();
  } catch (exc) {
    if (exc instanceof DOMException && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "NetworkError", "the gateway did not answer", "network");
  }
  if (response.status === 401) {
    session.clear("expired");
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/** GET/POST... and parse JSON (``null`` for 204). */
export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const response = await request(path, opts);
  if (response.status === 204) return null as T;
  return (await response.json()) as T;
}

/** Log in with a password; the session then holds the tokens. */
export async function login(username: string, password: string): Promise<User> {
  let response: Response;
  try {
    response = await fetch("/api/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
  } catch {
    throw new ApiError(0, "NetworkError", "the gateway did not answer", "network");
  }
  if (!response.ok) throw await errorFrom(response);
  const pair = (await response.json()) as TokenPair;
  session.accept(pair, "login");
  return session.user as User;
}

/** Revoke the refresh token (best effort) and forget the session. */
export async function logout(): Promise<void> {
  const token = session.refreshToken;
  session.clear("logout");
  if (token) {
    try {
      await fetch("/api/v1/auth/logout", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: token }),
      });
    } catch {
      // already forgotten locally; the refresh token expires on its own
    }
  }
}

/** Resume a session after a reload from the refresh token kept for this tab. */
export async function resume(): Promise<User | null> {
  if (!session.refreshToken) return null;
  if (await session.refresh()) return session.user;
  session.clear("logout");
  return null;
}

/** Fetch a file with the session's credentials and hand it to the browser as a download. */
export async function download(path: string, query: Query, fallbackName: string): Promise<string> {
  const response = await request(path, { query });
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  const name = match ? decodeURIComponent(match[1]) : fallbackName;
  const blob = await response.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
  return name;
}
