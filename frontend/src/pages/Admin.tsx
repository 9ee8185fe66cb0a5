import { useState, type FormEvent, type ReactNode } from "react";
import { api, ApiError } from "../api";
import { Select } from "../components/Field";
import { Empty, ErrorBox, Load } from "../components/States";
import { formatDateTime } from "../format";
import { resetSites, useLoad } from "../hooks";
import { useI18n, type Key } from "../i18n";
import type { Site } from "../kpi";
import { useQueryState } from "../router";
import { useUser } from "../session";

const TABS = ["users", "tokens", "sites", "rules"] as const;
type Tab = (typeof TABS)[number];

interface UserRow {
  username: string;
  role: string;
  active: boolean;
  last_login_at: string | null;
}
interface TokenRow {
  id: number;
  name: string;
  prefix: string;
  scopes: string[];
  created_by: string | null;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}
interface RuleRow {
  id: number;
  name: string;
  kind: string;
  severity: string;
  sites: string[] | null;
  enabled: boolean;
}

/** Run a write, then say how it went (and reload the list on success). */
function useAction(): [(fn: () => Promise<unknown>, after?: () => void) => Promise<boolean>, ReactNode] {
  const { t } = useI18n();
  const [state, setState] = useState<{ ok: true } | { error: ApiError } | null>(null);
  const run = async (fn: () => Promise<unknown>, after?: () => void): Promise<boolean> => {
    setState(null);
    try {
      await fn();
      setState({ ok: true });
      after?.();
      return true;
    } catch (exc) {
      setState({ error: exc instanceof ApiError ? exc : new ApiError(0, "ClientError", String(exc), "other") });
      return false;
    }
  };
  const view = state === null ? null : "ok" in state ? <p className="ok">{t("admin.saved")}</p> : <ErrorBox error={state.error} />;
  return [run, view];
}

export function AdminPage(): ReactNode {
  const { t } = useI18n();
  const [query, setQuery] = useQueryState();
  const tab = (TABS as readonly string[]).includes(query.get("tab") ?? "") ? (query.get("tab") as Tab) : "users";
  return (
    <section className="admin">
      <div className="page-head">
        <h1>{t("admin.title")}</h1>
      </div>
      <div className="tabs" role="tablist">
        {TABS.map((k) => (
          <button key={k} type="button" role="tab" aria-selected={tab === k} className={tab === k ? "on" : ""}
            data-testid={`tab-${k}`} onClick={() => setQuery({ tab: k })}>
            {t(`admin.${k}` as Key)}
          </button>
        ))}
      </div>
      {tab === "users" && <Users />}
      {tab === "tokens" && <Tokens />}
      {tab === "sites" && <Sites />}
      {tab === "rules" && <Rules />}
    </section>
  );
}

function Users(): ReactNode {
  const { t, lang } = useI18n();
  const me = useUser();
  const list = useLoad("users", (signal) => api<UserRow[]>("/users", { signal }));
  const [run, outcome] = useAction();
  const [form, setForm] = useState({ username: "", password: "", role: "viewer" });
  const roles = ["viewer", "operator", "admin"].map((r) => ({ value: r, label: t(`role.${r}` as Key) }));
  const create = (e: FormEvent): void => {
    e.preventDefault();
    void run(() => api("/users", { method: "POST", body: form }), () => {
      setForm({ username: "", password: "", role: "viewer" });
      list.reload();
    });
  };
  return (
    <div className="card">
      <form className="inline-form" onSubmit={create}>
        <label className="field"><span>{t("admin.username")}</span>
          <input required value={form.username} onChange={(e) => setForm({ ...form, username: e.target.value })} /></label>
        <label className="field"><span>{t("admin.password")}</span>
          <input required type="password" minLength={12} autoComplete="new-password" value={form.password}
            onChange={(e) => setForm({ ...form, password: e.target.value })} /></label>
        <Select name="new-role" label={t("admin.role")} value={form.role} options={roles} onChange={(v) => setForm({ ...form, role: v })} />
        <button type="submit" className="primary">{t("admin.create")}</button>
      </form>
      {outcome}
      <Load state={list} isEmpty={(l) => l.length === 0}>
        {(users) => (
          <div className="table-wrap">
            <table data-testid="users-table">
              <thead><tr><th>{t("admin.username")}</th><th>{t("admin.role")}</th><th>{t("admin.active")}</th><th>{t("admin.lastLogin")}</th><th /></tr></thead>
              <tbody>
                {users.map((u) => (
                  <tr key={u.username} className={u.active ? "" : "muted"}>
                    <td>{u.username}</td>
                    <td>
                      <select aria-label={t("admin.role")} value={u.role} disabled={!u.active}
                        onChange={(e) => void run(() => api(`/users/${encodeURIComponent(u.username)}`, { method: "PATCH", body: { role: e.target.value } }), list.reload)}>
                        {roles.map((r) => <option key={r.value} value={r.value}>{r.label}</option>)}
                      </select>
                    </td>
                    <td>{t(u.active ? "admin.yes" : "admin.no")}</td>
                    <td>{u.last_login_at ? formatDateTime(u.last_login_at, lang) : "—"}</td>
                    <td>{u.active && u.username !== me.username && (
                      <button type="button" className="danger"
                        onClick={() => void run(() => api(`/users/${encodeURIComponent(u.username)}`, { method: "DELETE" }), list.reload)}>
                        {t("admin.deactivate")}
                      </button>)}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Load>
    </div>
  );
}

function Tokens(): ReactNode {
  const { t, lang } = useI18n();
  const list = useLoad("tokens", (signal) => api<TokenRow[]>("/tokens", { signal }));
  const [run, outcome] = useAction();
  const [name, setName] = useState("");
  const [write, setWrite] = useState(false);
  const [expires, setExpires] = useState("");
  const [secret, setSecret] = useState<string | null>(null);
  const [copied, setCopied] = useState(false);
  const create = (e: FormEvent): void => {
    e.preventDefault();
    setSecret(null);
    setCopied(false);
    void run(async () => {
      const body = {
        name,
        scopes: write ? ["read", "write"] : ["read"],
        expires_at: expires ? new Date(`${expires}T23:59:59`).toISOString() : null,
      };
      const created = await api<TokenRow & { token: string }>("/tokens", { method: "POST", body });
      setSecret(created.token);
      setName("");
    }, list.reload);
  };
  return (
    <div className="card">
      <form className="inline-form" onSubmit={create}>
        <label className="field"><span>{t("admin.tokenName")}</span>
          <input required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} /></label>
        <label className="field check"><input type="checkbox" checked={write} onChange={(e) => setWrite(e.target.checked)} />
          <span>{t("admin.scopeWrite")}</span></label>
        <label className="field"><span>{t("admin.expires")}</span>
          <input type="date" value={expires} onChange={(e) => setExpires(e.target.value)} /></label>
        <button type="submit" className="primary">{t("admin.create")}</button>
      </form>
      {secret && (
        <div className="secret" role="alert" data-testid="token-secret">
          <p>{t("admin.secretOnce")}</p>
          <code>{secret}</code>
          <button type="button" onClick={() => void navigator.clipboard?.writeText(secret).then(() => setCopied(true))}>
            {copied ? t("admin.copied") : t("admin.copy")}
          </button>
        </div>
      )}
      {!secret && outcome}
      <Load state={list}>
        {(tokens) =>
          tokens.length === 0 ? <Empty /> : (
            <div className="table-wrap">
              <table data-testid="tokens-table">
                <thead><tr><th>{t("admin.tokenName")}</th><th>{t("admin.prefix")}</th><th>{t("admin.scopes")}</th><th>{t("admin.expires")}</th><th /></tr></thead>
                <tbody>
                  {tokens.map((k) => (
                    <tr key={k.id} className={k.revoked_at ? "muted" : ""}>
                      <td>{k.name}</td>
                      <td><code>{k.prefix}…</code></td>
                      <td>{k.scopes.join(", ")}</td>
                      <td>{k.expires_at ? formatDateTime(k.expires_at, lang) : t("admin.never")}</td>
                      <td>{k.revoked_at ? t("admin.revoked") : (
                        <button type="button" className="danger" onClick={() => void run(() => api(`/tokens/${k.id}`, { method: "DELETE" }), list.reload)}>
                          {t("admin.revoke")}
                        </button>)}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )
        }
      </Load>
    </div>
  );
}

function Sites(): ReactNode {
  const { t } = useI18n();
  const list = useLoad("admin-sites", (signal) => api<Site[]>("/sites", { signal }));
  const [run, outcome] = useAction();
  const empty = { code: "", name: "", timezone: "Europe/Paris", capacity_kw: "", country_code: "FR" };
  const [form, setForm] = useState(empty);
  const create = (e: FormEvent): void => {
    e.preventDefault();
    const body = { ...form, capacity_kw: form.capacity_kw === "" ? null : Number(form.capacity_kw), country_code: form.country_code || null };
    void run(() => api("/sites", { method: "POST", body }), () => {
      setForm(empty);
      resetSites();
      list.reload();
    });
  };
  const input = (key: keyof typeof empty, label: Key, extra: Record<string, unknown> = {}): ReactNode => (
    <label className="field"><span>{t(label)}</span>
      <input value={form[key]} onChange={(e) => setForm({ ...form, [key]: e.target.value })} {...extra} /></label>
  );
  return (
    <div className="card">
      <form className="inline-form" onSubmit={create}>
        {input("code", "admin.siteCode", { required: true, maxLength: 32, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]*" })}
        {input("name", "admin.siteName", { required: true })}
        {input("timezone", "admin.timezone", { required: true })}
        {input("capacity_kw", "admin.capacity", { type: "number", min: 0, step: "any" })}
        {input("country_code", "admin.country", { maxLength: 2 })}
        <button type="submit" className="primary">{t("admin.create")}</button>
      </form>
      {outcome}
      <Load state={list} isEmpty={(l) => l.length === 0}>
        {(sites) => (
          <div className="table-wrap">
            <table data-testid="sites-table">
              <thead><tr><th>{t("admin.siteCode")}</th><th>{t("admin.siteName")}</th><th>{t("admin.timezone")}</th><th className="num">{t("admin.capacity")}</th></tr></thead>
              <tbody>
                {sites.map((s) => (
                  <tr key={s.code}><td>{s.code}</td><td>{s.name}</td><td>{s.timezone}</td><td className="num">{s.capacity_kw ?? "—"}</td></tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Load>
    </div>
  );
}

function Rules(): ReactNode {
  const { t } = useI18n();
  const list = useLoad("rules", (signal) => api<RuleRow[]>("/alert-rules", { signal }));
  const [run, outcome] = useAction();
  return (
    <div className="card">
      {outcome}
      <Load state={list} what={t("admin.rulesWhat")} isEmpty={(l) => l.length === 0}>
        {(rules) => (
          <div className="table-wrap">
            <table data-testid="rules-table">
              <thead><tr><th>{t("admin.siteName")}</th><th>{t("admin.ruleKind")}</th><th>{t("filter.severity")}</th><th>{t("admin.ruleSites")}</th><th>{t("admin.enabled")}</th></tr></thead>
              <tbody>
                {rules.map((r) => (
                  <tr key={r.id}>
                    <td>{r.name}</td>
                    <td>{r.kind}</td>
                    <td><span className={`badge sev-${r.severity}`}>{t(r.severity === "critical" ? "alerts.critical" : "alerts.warning")}</span></td>
                    <td>{r.sites?.join(", ") ?? t("admin.everySite")}</td>
                    <td>
                      <input type="checkbox" aria-label={t("admin.enabled")} checked={r.enabled}
                        onChange={(e) => void run(() => api(`/alert-rules/${r.id}`, { method: "PATCH", body: { enabled: e.target.checked } }), list.reload)} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Load>
    </div>
  );
}
